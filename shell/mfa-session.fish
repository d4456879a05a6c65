# mfa-session shell integration for fish 3: prompt segment and tab completion.
# Load it with `mfa-session init fish | source` in ~/.config/fish/config.fish.
# Rendering the prompt uses fish builtins and `date` only: no Python, no AWS client.

# --- Completion lists: the one place to add a command or an option. --------
# tests/e2e/test_shells.py checks them against mfa-session's argparse parser.
# Options of command X live in __mfa_session_options_X (dashes become underscores).
set -g __mfa_session_commands credential-process exec export status clear init doctor totp enroll keys login serve
set -g __mfa_session_global_options --debug --version --help
set -g __mfa_session_session_options --duration --role-arn --external-id --role-session-name --token-code --min-remaining
set -g __mfa_session_server_options --port --listen --allow-non-loopback
set -g __mfa_session_options_credential_process --profile $__mfa_session_session_options --debug --help
set -g __mfa_session_options_exec --profile $__mfa_session_session_options --server $__mfa_session_server_options --debug --help
set -g __mfa_session_options_export --profile --format $__mfa_session_session_options --debug --help
set -g __mfa_session_options_status --json --debug --help
set -g __mfa_session_options_clear --profile --all --stale --debug --help
set -g __mfa_session_options_init --no-prompt --debug --help
set -g __mfa_session_options_doctor --profile --json --offline --debug --help
set -g __mfa_session_options_totp --profile --debug --help
set -g __mfa_session_options_keys --profile --offline --all --yes --wait --debug --help
set -g __mfa_session_options_enroll --profile --device-name --no-store --no-qr --qr-png --debug --help
set -g __mfa_session_options_login --profile $__mfa_session_session_options --destination --print --without-mfa --debug --help
set -g __mfa_session_options_serve --profile --format $__mfa_session_session_options $__mfa_session_server_options --debug --help
# Options that take a value: the next word is that value, never an option.
set -g __mfa_session_value_options --profile --format --device-name --qr-png --destination --port --listen --wait $__mfa_session_session_options
set -g __mfa_session_formats sh fish powershell json dotenv
set -g __mfa_session_shells bash zsh fish
set -g __mfa_session_totp_actions set code remove
set -g __mfa_session_keys_actions add import remove rotate

# --- Prompt segment ---------------------------------------------------------

function mfa_session_prompt --description 'Print the mfa-session segment, e.g. aws:dev 41m'
    # --plain (or MFA_SESSION_PROMPT_COLOR=0, or NO_COLOR) prints it without colour.
    set -l name $MFA_SESSION_PROFILE
    test -n "$name"; or set name $AWS_PROFILE
    test -n "$name"; or return 0
    set -l expiry
    if test -n "$MFA_SESSION_PROFILE"; and string match -qr '^[0-9]+$' -- "$MFA_SESSION_EXPIRATION"
        set expiry $MFA_SESSION_EXPIRATION
    else
        set -l dir $MFA_SESSION_CACHE_DIR
        test -n "$dir"; or set dir __MFA_SESSION_DEFAULT_CACHE_DIR__
        string match -q '~/*' -- "$dir"; and set dir $HOME/(string sub -s 3 -- "$dir")
        for kind in session alias
            for file in $dir/$kind-*.expiry
                read -l --delimiter \t epoch profile role rest <$file
                string match -qr '^[0-9]+$' -- "$epoch"; or continue
                test "$profile" = "$name"; or continue
                # A role session for the same source profile is not that profile's session.
                test $kind = alias -o "$role" = -; or continue
                if test -z "$expiry"; or test $epoch -gt $expiry
                    set expiry $epoch
                end
            end
        end
        test -n "$expiry"; or return 0
    end
    set -l left (math $expiry - (date +%s))
    set -l text
    set -l colour
    if test $left -le 0
        set text "aws:$name expired"
        set colour red
    else
        if test $left -lt 3600
            set text (printf 'aws:%s %dm' $name (math "floor($left / 60)"))
        else
            set text (printf 'aws:%s %dh%02dm' $name (math "floor($left / 3600)") (math "floor($left % 3600 / 60)"))
        end
        set colour green
        test $left -lt 900; and set colour yellow
    end
    if test "$argv[1]" = --plain -o "$MFA_SESSION_PROMPT_COLOR" = 0 -o -n "$NO_COLOR"
        printf '%s' $text
    else
        printf '%s%s%s' (set_color $colour) $text (set_color normal)
    end
end

# --- Prompt integration (skipped when MFA_SESSION_NO_PROMPT is set) ---------

function __mfa_session_return --description 'Return the status given'
    return $argv[1]
end

if test -z "$MFA_SESSION_NO_PROMPT"
    # Wrap the current prompt once; a prompt chosen later (fish_config) is wrapped on the next init.
    if not functions fish_prompt 2>/dev/null | string match -q '*__mfa_session_original_fish_prompt*'
        functions -e __mfa_session_original_fish_prompt
        functions -q fish_prompt; and functions -c fish_prompt __mfa_session_original_fish_prompt
        function fish_prompt --description 'The mfa-session segment, then the prompt it wraps'
            set -l __mfa_session_last $status $pipestatus
            set -l __mfa_session_segment (mfa_session_prompt)
            test -n "$__mfa_session_segment"; and printf '%s ' $__mfa_session_segment
            functions -q __mfa_session_original_fish_prompt; or return
            # Give the wrapped prompt the $status and $pipestatus it would have seen.
            switch (count $__mfa_session_last)
                case 3
                    __mfa_session_return $__mfa_session_last[2] | __mfa_session_return $__mfa_session_last[3]
                case 4
                    __mfa_session_return $__mfa_session_last[2] | __mfa_session_return $__mfa_session_last[3] | __mfa_session_return $__mfa_session_last[4]
                case '*'
                    __mfa_session_return $__mfa_session_last[1]
            end
            __mfa_session_original_fish_prompt
        end
    end
end

# --- Completion --------------------------------------------------------------

function __mfa_session_profiles --description 'Print the profile names of the AWS config and credentials files'
    set -l names
    for kind in config credentials
        set -l file $AWS_CONFIG_FILE
        test -n "$file"; or set file ~/.aws/config
        if test $kind = credentials
            set file $AWS_SHARED_CREDENTIALS_FILE
            test -n "$file"; or set file ~/.aws/credentials
        end
        set file (string replace -r '^~/' "$HOME/" -- $file)
        test -r "$file"; or continue
        while read -l line
            set -l section (string match -r '^\s*\[\s*(.*?)\s*\]' -- $line)
            or continue
            set -l name $section[2]
            if test $kind = config
                # In the config file only [default] and [profile X] are profiles.
                if string match -qr '^profile\s' -- $name
                    set name (string replace -r '^profile\s+' '' -- $name)
                else if test "$name" != default
                    continue
                end
            end
            test -n "$name"; and not contains -- $name $names; and set -a names $name
        end <$file
    end
    printf '%s\n' $names
end

function __mfa_session_state --description 'Print the command being completed: none, its name, or exec--'
    set -l tokens (commandline -opc)
    set -e tokens[1]
    set -l command
    for token in $tokens
        if test -n "$command"
            if test $command = exec -a "$token" = --
                echo exec--
                return
            end
        else if not string match -q -- '-*' $token
            set command $token
        end
    end
    test -n "$command"; or set command none
    echo $command
end

function __mfa_session_complete_command --description 'Complete the command line after exec --'
    set -l tokens (commandline -opc)
    while set -q tokens[1]; and test "$tokens[1]" != --
        set -e tokens[1]
    end
    set -e tokens[1]
    complete -C (string join ' ' -- (string escape -- $tokens) (commandline -ct))
end

# A function, so that its loop variables stay local.
function __mfa_session_register_completion
    complete -c mfa-session -e
    complete -c mfa-session -f
    complete -c mfa-session -n 'test (__mfa_session_state) = none' -a "$__mfa_session_commands"
    for option in $__mfa_session_global_options
        complete -c mfa-session -n 'test (__mfa_session_state) = none' -l (string sub -s 3 -- $option)
    end
    for command in $__mfa_session_commands
        set -l options __mfa_session_options_(string replace -a - _ -- $command)
        for option in $$options
            set -l argument
            switch $option
                case --profile
                    set argument -x -a '(__mfa_session_profiles)'
                case --format
                    set argument -x -a "$__mfa_session_formats"
                case --qr-png
                    set argument -r -F
                case $__mfa_session_value_options
                    set argument -x
            end
            complete -c mfa-session -n "test (__mfa_session_state) = $command" -l (string sub -s 3 -- $option) $argument
        end
    end
    complete -c mfa-session -n 'test (__mfa_session_state) = init' -a "$__mfa_session_shells"
    complete -c mfa-session -n 'test (__mfa_session_state) = totp' -a "$__mfa_session_totp_actions"
    complete -c mfa-session -n 'test (__mfa_session_state) = keys' -a "$__mfa_session_keys_actions"
    complete -c mfa-session -n 'test (__mfa_session_state) = exec--' -a '(__mfa_session_complete_command)'
end
__mfa_session_register_completion
functions -e __mfa_session_register_completion

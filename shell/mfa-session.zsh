# mfa-session shell integration for zsh 5: prompt segment and tab completion.
# Load it with `eval "$(mfa-session init zsh)"` at the end of ~/.zshrc.
# Rendering the prompt uses shell builtins and zsh/datetime only: no Python,
# no AWS client, no subshell, no external command.

# --- Completion lists: the one place to add a command or an option. --------
# tests/e2e/test_shells.py checks them against mfa-session's argparse parser.
typeset -g __mfa_session_commands='credential-process exec export status clear init doctor totp enroll keys login serve'
typeset -g __mfa_session_global_options='--debug --version --help'
typeset -g __mfa_session_session_options='--duration --role-arn --external-id --role-session-name --token-code --min-remaining'
typeset -g __mfa_session_server_options='--port --listen --allow-non-loopback'
typeset -gA __mfa_session_options
__mfa_session_options=(
    credential-process "--profile $__mfa_session_session_options --debug --help"
    exec "--profile $__mfa_session_session_options --server $__mfa_session_server_options --debug --help"
    export "--profile --format $__mfa_session_session_options --debug --help"
    status '--json --debug --help'
    clear '--profile --all --stale --debug --help'
    init '--no-prompt --debug --help'
    doctor '--profile --json --offline --debug --help'
    totp '--profile --debug --help'
    keys '--profile --offline --all --yes --wait --debug --help'
    enroll '--profile --device-name --no-store --no-qr --qr-png --debug --help'
    login "--profile $__mfa_session_session_options --destination --print --without-mfa --debug --help"
    serve "--profile --format $__mfa_session_session_options $__mfa_session_server_options --debug --help"
)
# Options that take a value: the next word is that value, never an option.
typeset -g __mfa_session_value_options="--profile --format --device-name --qr-png --destination --port --listen --wait $__mfa_session_session_options"
typeset -g __mfa_session_formats='sh fish powershell json dotenv'
typeset -g __mfa_session_shells='bash zsh fish'
typeset -g __mfa_session_totp_actions='set code remove'
typeset -g __mfa_session_keys_actions='add import remove rotate'

zmodload zsh/datetime 2>/dev/null

# --- Prompt segment ---------------------------------------------------------

# Sets __mfa_session_text (declare it local first) to the segment: plain text
# with "plain" as $1, else with %F{colour}...%f prompt escapes.
__mfa_session_render() {
    emulate -L zsh
    __mfa_session_text=
    local name=${MFA_SESSION_PROFILE:-${AWS_PROFILE:-}}
    [[ -n $name ]] || return 0
    local expiry=${MFA_SESSION_EXPIRATION:-}
    if [[ -z ${MFA_SESSION_PROFILE:-} || -z $expiry || $expiry == *[^0-9]* ]]; then
        expiry=
        local dir=${MFA_SESSION_CACHE_DIR:-__MFA_SESSION_DEFAULT_CACHE_DIR__}
        [[ $dir == '~/'* ]] && dir=$HOME/${dir#'~/'}
        local file epoch field2 field3 rest
        for file in $dir/session-*.expiry(N) $dir/alias-*.expiry(N); do
            epoch=
            { IFS=$'\t' read -r epoch field2 field3 rest <$file } 2>/dev/null
            [[ -n $epoch && $epoch != *[^0-9]* && $field2 == $name ]] || continue
            # A role session for the same source profile is not that profile's session.
            [[ ${file:t} == alias-* || $field3 == - ]] || continue
            if [[ -z $expiry ]] || (( 10#$epoch > 10#$expiry )); then
                expiry=$epoch
            fi
        done
        [[ -n $expiry ]] || return 0
    fi
    local now=${EPOCHSECONDS:-}
    if [[ -z $now ]]; then
        now=$(date +%s)
        [[ -n $now ]] || return 0
    fi
    local -i left hours minutes
    local colour
    (( left = 10#$expiry - now, hours = left / 3600, minutes = left % 3600 / 60 ))
    if (( left <= 0 )); then
        __mfa_session_text='expired'
        colour=red
    else
        if (( hours )); then
            __mfa_session_text=${hours}h${(l:2::0:)minutes}m
        else
            __mfa_session_text=${minutes}m
        fi
        if (( left < 900 )); then colour=yellow; else colour=green; fi
    fi
    if [[ $1 != plain && ${MFA_SESSION_PROMPT_COLOR:-1} != 0 && -z ${NO_COLOR:-} ]]; then
        # The text goes through prompt expansion: a % in a profile name must stay a %.
        __mfa_session_text="%F{$colour}aws:${name//\%/%%} $__mfa_session_text%f"
    else
        __mfa_session_text="aws:$name $__mfa_session_text"
    fi
}

# Prints the segment for the current profile, e.g. "aws:dev 41m" (no newline),
# with %F{...}%f escapes for PROMPT/RPROMPT; --plain (or
# MFA_SESSION_PROMPT_COLOR=0, or NO_COLOR) prints it without them.
mfa_session_prompt() {
    local __mfa_session_text
    if [[ ${1:-} == --plain ]]; then
        __mfa_session_render plain
    else
        __mfa_session_render colour
    fi
    print -rn -- $__mfa_session_text
}

# --- Prompt integration (skipped when MFA_SESSION_NO_PROMPT is set) ---------

# A precmd hook: computes the PROMPT prefix without a subshell.
__mfa_session_precmd() {
    local __mfa_session_text
    __mfa_session_render colour
    __mfa_session_ps1=${__mfa_session_text:+$__mfa_session_text }
}

typeset -ga precmd_functions
if [[ -z ${MFA_SESSION_NO_PROMPT:-} ]]; then
    typeset -g __mfa_session_ps1=
    setopt prompt_subst
    (( ${precmd_functions[(Ie)__mfa_session_precmd]} )) || precmd_functions+=(__mfa_session_precmd)
    [[ $PROMPT == *__mfa_session_ps1* ]] || PROMPT='${__mfa_session_ps1-}'$PROMPT
fi

# --- Completion --------------------------------------------------------------

# Sets reply to the profile names of the AWS config and credentials files, each once.
__mfa_session_profiles() {
    emulate -L zsh -o extended_glob
    reply=()
    local kind file line name
    for kind in config credentials; do
        if [[ $kind == config ]]; then
            file=${AWS_CONFIG_FILE:-~/.aws/config}
        else
            file=${AWS_SHARED_CREDENTIALS_FILE:-~/.aws/credentials}
        fi
        [[ $file == '~/'* ]] && file=$HOME/${file#'~/'}
        [[ -r $file ]] || continue
        while IFS= read -r line || [[ -n $line ]]; do
            line=${${line##[[:space:]]#}%%[[:space:]]#}
            [[ $line == '['*']' ]] || continue
            name=${${line[2,-2]##[[:space:]]#}%%[[:space:]]#}
            if [[ $kind == config ]]; then
                # In the config file only [default] and [profile X] are profiles.
                if [[ $name == profile[[:space:]]* ]]; then
                    name=${${name#profile}##[[:space:]]#}
                elif [[ $name != default ]]; then
                    continue
                fi
            fi
            [[ -n $name ]] && (( ! ${reply[(Ie)$name]} )) && reply+=($name)
        done <$file
    done
    return 0
}

_mfa_session() {
    local cur=$words[CURRENT] prev=$words[CURRENT-1] command= i
    for (( i = 2; i < CURRENT; i++ )); do
        if [[ -n $command ]]; then
            # exec -- CMD ARGS: complete the command line that follows.
            if [[ $command == exec && $words[i] == -- ]]; then
                shift $i words
                (( CURRENT -= i ))
                _normal
                return
            fi
        elif [[ $words[i] != -* ]]; then
            command=$words[i]
        fi
    done
    if [[ -z $command ]]; then
        if [[ $cur == -* ]]; then
            compadd -- ${=__mfa_session_global_options}
        else
            compadd -- ${=__mfa_session_commands}
        fi
        return
    fi
    if [[ " $__mfa_session_value_options " == *" $prev "* ]]; then
        case $prev in
        --profile)
            local -a reply
            __mfa_session_profiles
            compadd -- $reply
            ;;
        --format) compadd -- ${=__mfa_session_formats} ;;
        --qr-png) _files ;;
        *) _message -e value 'value' ;;
        esac
        return
    fi
    if [[ $cur == -* ]]; then
        compadd -- ${=__mfa_session_options[$command]}
        [[ $command == exec ]] && compadd -- --
    elif [[ $command == init ]]; then
        compadd -- ${=__mfa_session_shells}
    elif [[ $command == totp ]]; then
        compadd -- ${=__mfa_session_totp_actions}
    elif [[ $command == keys ]]; then
        compadd -- ${=__mfa_session_keys_actions}
    elif [[ $command == exec ]]; then
        _command_names -e
    fi
}

# compdef exists once compinit has run: register now, or at the first prompt
# when compinit is loaded after this script.
__mfa_session_register_completion() {
    (( $+functions[compdef] )) || return 0
    compdef _mfa_session mfa-session
    precmd_functions=(${precmd_functions:#__mfa_session_register_completion})
}
__mfa_session_register_completion
(( $+functions[compdef] )) || (( ${precmd_functions[(Ie)__mfa_session_register_completion]} )) ||
    precmd_functions+=(__mfa_session_register_completion)

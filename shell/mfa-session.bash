# mfa-session shell integration for bash 4.2+: prompt segment and tab completion.
# Load it with `eval "$(mfa-session init bash)"` at the end of ~/.bashrc.
# Rendering the prompt uses shell builtins only: no Python, no AWS client, no
# subshell, no external command (bash < 4.2 falls back to `date`).
# Word lists are split on purpose; '~/' is matched, not expanded; PROMPT_COMMAND
# is a string unless bash 5.1 made it an array.
# shellcheck disable=SC2086,SC2088,SC2128,SC2178

# --- Completion lists: the one place to add a command or an option. --------
# tests/e2e/test_shells.py checks them against mfa-session's argparse parser.
__mfa_session_commands='credential-process exec export status clear init doctor totp enroll keys login serve'
__mfa_session_global_options='--debug --version --help'
__mfa_session_session_options='--duration --role-arn --external-id --role-session-name --token-code --min-remaining'
__mfa_session_server_options='--port --listen --allow-non-loopback'
declare -gA __mfa_session_options=(
    [credential-process]="--profile $__mfa_session_session_options --debug --help"
    [exec]="--profile $__mfa_session_session_options --server $__mfa_session_server_options --debug --help"
    [export]="--profile --format $__mfa_session_session_options --debug --help"
    [status]='--json --debug --help'
    [clear]='--profile --all --stale --debug --help'
    [init]='--no-prompt --debug --help'
    [doctor]='--profile --json --offline --debug --help'
    [totp]='--profile --debug --help'
    [keys]='--profile --offline --all --yes --wait --debug --help'
    [enroll]='--profile --device-name --no-store --no-qr --qr-png --debug --help'
    [login]="--profile $__mfa_session_session_options --destination --print --without-mfa --debug --help"
    [serve]="--profile --format $__mfa_session_session_options $__mfa_session_server_options --debug --help"
)
# Options that take a value: the next word is that value, never an option.
__mfa_session_value_options="--profile --format --device-name --qr-png --destination --port --listen --wait $__mfa_session_session_options"
__mfa_session_formats='sh fish powershell json dotenv'
__mfa_session_shells='bash zsh fish'
__mfa_session_totp_actions='set code remove'
__mfa_session_keys_actions='add import remove rotate'

# --- Prompt segment ---------------------------------------------------------

# Sets __mfa_session_text (declare it local first) to the segment: plain text
# with "plain" as $1, else wrapped in colour escapes inside readline's \001 \002
# markers (PS1's \[ \] are not honoured inside expansions).
__mfa_session_render() {
    __mfa_session_text=
    local name=${MFA_SESSION_PROFILE:-${AWS_PROFILE:-}}
    [[ -n $name ]] || return 0
    local expiry=${MFA_SESSION_EXPIRATION:-}
    if [[ -z ${MFA_SESSION_PROFILE:-} || -z $expiry || $expiry == *[!0-9]* ]]; then
        expiry=
        local dir=${MFA_SESSION_CACHE_DIR:-__MFA_SESSION_DEFAULT_CACHE_DIR__}
        [[ $dir == '~/'* ]] && dir=$HOME/${dir#'~/'}
        local file epoch field2 field3 rest failglob=
        # failglob would abort on an empty folder; nullglob and default both work.
        if shopt -q failglob; then
            failglob=1
            shopt -u failglob
        fi
        for file in "$dir"/session-*.expiry "$dir"/alias-*.expiry; do
            [[ -f $file ]] || continue
            epoch=
            { IFS=$'\t' read -r epoch field2 field3 rest <"$file"; } 2>/dev/null
            [[ -n $epoch && $epoch != *[!0-9]* && $field2 == "$name" ]] || continue
            # A role session for the same source profile is not that profile's session.
            [[ ${file##*/} == alias-* || $field3 == - ]] || continue
            if [[ -z $expiry ]] || ((10#$epoch > 10#$expiry)); then
                expiry=$epoch
            fi
        done
        [[ -n $failglob ]] && shopt -s failglob
        [[ -n $expiry ]] || return 0
    fi
    local now=${EPOCHSECONDS:-}
    if [[ -z $now ]]; then
        printf -v now '%(%s)T' -1 2>/dev/null || now=$(date +%s)
        [[ -n $now ]] || return 0
    fi
    local left=$((10#$expiry - now)) colour
    if ((left <= 0)); then
        __mfa_session_text="aws:$name expired"
        colour=31
    else
        if ((left < 3600)); then
            printf -v __mfa_session_text 'aws:%s %dm' "$name" $((left / 60))
        else
            printf -v __mfa_session_text 'aws:%s %dh%02dm' "$name" $((left / 3600)) $((left % 3600 / 60))
        fi
        if ((left < 900)); then colour=33; else colour=32; fi
    fi
    if [[ $1 != plain && ${MFA_SESSION_PROMPT_COLOR:-1} != 0 && -z ${NO_COLOR:-} ]]; then
        __mfa_session_text=$'\001\e['$colour$'m\002'$__mfa_session_text$'\001\e[39m\002'
    fi
}

# Prints the segment for the current profile, e.g. "aws:dev 41m" (no newline).
# --plain (or MFA_SESSION_PROMPT_COLOR=0, or NO_COLOR) prints it without colour.
mfa_session_prompt() {
    local __mfa_session_text
    if [[ ${1:-} == --plain ]]; then
        __mfa_session_render plain
    else
        __mfa_session_render colour
    fi
    printf '%s' "$__mfa_session_text"
}

# --- Prompt integration (skipped when MFA_SESSION_NO_PROMPT is set) ---------

# Runs from PROMPT_COMMAND: computes the PS1 prefix without a subshell and
# leaves $? as it was, for prompts that show the last exit status.
__mfa_session_prompt_command() {
    local status=$? __mfa_session_text
    __mfa_session_render colour
    __mfa_session_ps1=${__mfa_session_text:+$__mfa_session_text }
    return "$status"
}

if [[ -z ${MFA_SESSION_NO_PROMPT:-} ]]; then
    __mfa_session_ps1=
    if ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] >= 501)) && [[ ${PROMPT_COMMAND+set} && ${PROMPT_COMMAND@a} == *a* ]]; then
        # bash 5.1+: PROMPT_COMMAND may be an array of commands.
        [[ " ${PROMPT_COMMAND[*]} " == *' __mfa_session_prompt_command '* ]] ||
            PROMPT_COMMAND+=(__mfa_session_prompt_command)
    elif [[ ${PROMPT_COMMAND:-} != *__mfa_session_prompt_command* ]]; then
        # A newline, not ';': the user's commands may end in ';' or '&'.
        PROMPT_COMMAND=${PROMPT_COMMAND:+$PROMPT_COMMAND$'\n'}__mfa_session_prompt_command
    fi
    [[ ${PS1:-} == *__mfa_session_ps1* ]] || PS1='${__mfa_session_ps1-}'${PS1:-}
fi

# --- Completion --------------------------------------------------------------

# Adds to COMPREPLY the words of $2.. that start with $1.
__mfa_session_add() {
    local prefix=$1 word
    shift
    for word in "$@"; do
        [[ $word == "$prefix"* ]] && COMPREPLY+=("$word")
    done
    return 0
}

# Adds to COMPREPLY the profile names (starting with $1) of the AWS config and
# credentials files, each once.
__mfa_session_add_profiles() {
    local prefix=$1 kind file line name seen=$'\n'
    for kind in config credentials; do
        if [[ $kind == config ]]; then
            file=${AWS_CONFIG_FILE:-~/.aws/config}
        else
            file=${AWS_SHARED_CREDENTIALS_FILE:-~/.aws/credentials}
        fi
        [[ $file == '~/'* ]] && file=$HOME/${file#'~/'}
        [[ -r $file ]] || continue
        while IFS= read -r line || [[ -n $line ]]; do
            line=${line#"${line%%[![:space:]]*}"}
            line=${line%"${line##*[![:space:]]}"}
            [[ $line == '['*']' ]] || continue
            name=${line:1:${#line}-2}
            name=${name#"${name%%[![:space:]]*}"}
            name=${name%"${name##*[![:space:]]}"}
            if [[ $kind == config ]]; then
                # In the config file only [default] and [profile X] are profiles.
                if [[ $name == profile[[:space:]]* ]]; then
                    name=${name#profile}
                    name=${name#"${name%%[![:space:]]*}"}
                elif [[ $name != default ]]; then
                    continue
                fi
            fi
            [[ -n $name && $seen != *$'\n'"$name"$'\n'* ]] || continue
            seen+=$name$'\n'
            [[ $name == "$prefix"* ]] && COMPREPLY+=("$name")
        done <"$file"
    done
    return 0
}

_mfa_session_complete() {
    COMPREPLY=()
    local cur=${COMP_WORDS[COMP_CWORD]-} prev='' command='' i word
    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
    # COMP_WORDBREAKS splits --profile=dev into "--profile" "=" "dev".
    if [[ $cur == = ]]; then
        cur=
    elif [[ $prev == = ]] && ((COMP_CWORD > 1)); then
        prev=${COMP_WORDS[COMP_CWORD - 2]}
    fi
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if [[ -n $command ]]; then
            # exec -- CMD ARGS: complete the command line that follows.
            if [[ $command == exec && $word == -- ]]; then
                if ((i + 1 == COMP_CWORD)); then
                    mapfile -t COMPREPLY < <(compgen -c -- "$cur")
                elif declare -F _command_offset >/dev/null; then
                    _command_offset $((i + 1))
                else
                    compopt -o filenames 2>/dev/null
                    mapfile -t COMPREPLY < <(compgen -f -- "$cur")
                fi
                return 0
            fi
        elif [[ $word != -* ]]; then
            command=$word
        fi
    done
    if [[ -z $command ]]; then
        if [[ $cur == -* ]]; then
            __mfa_session_add "$cur" $__mfa_session_global_options
        else
            __mfa_session_add "$cur" $__mfa_session_commands
        fi
        return 0
    fi
    if [[ -n $prev && " $__mfa_session_value_options " == *" $prev "* ]]; then
        case $prev in
        --profile) __mfa_session_add_profiles "$cur" ;;
        --format) __mfa_session_add "$cur" $__mfa_session_formats ;;
        --qr-png)
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
            ;;
        esac
        return 0
    fi
    if [[ $cur == -* ]]; then
        __mfa_session_add "$cur" ${__mfa_session_options[$command]-}
        [[ $command == exec ]] && __mfa_session_add "$cur" --
    elif [[ $command == init ]]; then
        __mfa_session_add "$cur" $__mfa_session_shells
    elif [[ $command == totp ]]; then
        __mfa_session_add "$cur" $__mfa_session_totp_actions
    elif [[ $command == keys ]]; then
        __mfa_session_add "$cur" $__mfa_session_keys_actions
    elif [[ $command == exec ]]; then
        mapfile -t COMPREPLY < <(compgen -c -- "$cur")
    fi
    return 0
}

complete -F _mfa_session_complete mfa-session

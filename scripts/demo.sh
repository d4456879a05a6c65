#!/usr/bin/env bash
# The main job end to end, with no AWS account: a local STS emulator, a throw-away
# HOME with ~/.aws files, a TOTP seed in a file keyring, and the real AWS CLI and
# boto3 using a credential_process profile. Run it with `make demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

demo_home=$(mktemp -d)
cleanup() {
    [ -n "${emulator_pid:-}" ] && kill "$emulator_pid" 2>/dev/null
    rm -rf "$demo_home"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# Everything below reads only the demo HOME: no real ~/.aws, cache or keyring.
for variable in $(env | grep -oE '^(AWS_[A-Z_]+|MFA_SESSION_[A-Z_]+)'); do unset "$variable"; done
export HOME="$demo_home" XDG_CACHE_HOME="$demo_home/.cache" XDG_DATA_HOME="$demo_home/.local/share"
export PYTHON_KEYRING_BACKEND=keyrings.alt.file.PlaintextKeyring

say "Starting a strict STS and IAM emulator on loopback"
python -m tests.sts_emulator --state-file "$demo_home/sts.json" --no-device >/dev/null &
emulator_pid=$!
for _ in $(seq 100); do [ -s "$demo_home/sts.json" ] && break; sleep 0.1; done
state() { python -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$demo_home/sts.json" "$1"; }
export AWS_ENDPOINT_URL_STS AWS_ENDPOINT_URL_IAM
AWS_ENDPOINT_URL_STS=$(state url)
AWS_ENDPOINT_URL_IAM=$AWS_ENDPOINT_URL_STS
echo "STS and IAM at $AWS_ENDPOINT_URL_STS; IAM user alice has keys and no MFA device yet"

say "~/.aws files: alice's long-term keys, and a profile 'dev' that SDKs use"
mkdir -p "$HOME/.aws"
cat > "$HOME/.aws/credentials" <<INI
[alice]
aws_access_key_id = $(state access_key_id)
aws_secret_access_key = $(state secret_access_key)
INI
cat > "$HOME/.aws/config" <<INI
# alice's keys are in ~/.aws/credentials
[profile alice]
region = eu-west-1

[profile dev]
credential_process = mfa-session credential-process --profile alice
region = eu-west-1
INI
cat "$HOME/.aws/config"

say "mfa-session enroll: the console's MFA steps from the terminal (QR shown on a terminal)"
mfa-session enroll --profile alice

say "enroll wrote mfa_serial into the profile, and nothing else"
cat "$HOME/.aws/config"

say "The seed is in the keyring (a file keyring for this demo): codes with no phone"
echo "current code: $(mfa-session totp code --profile alice)"

say "1st AWS CLI call: a code from the seed (the next one: enroll used this one), GetSessionToken"
time aws sts get-caller-identity --profile dev

say "2nd AWS CLI call, a new process: served from the cache, no code, no STS call"
time aws sts get-caller-identity --profile dev --query Arn --output text

say "boto3 with the same profile"
python -c 'import boto3; print(boto3.Session(profile_name="dev").client("sts").get_caller_identity()["Arn"])'

say "keys import: alice's long-term keys leave plaintext for the keyring"
mfa-session keys import --profile alice
echo "~/.aws/credentials now:"; cat "$HOME/.aws/credentials"; echo "(end of file)"

say "3rd AWS CLI call: still served from the cache; the keyring is not even opened"
aws sts get-caller-identity --profile dev --query Arn --output text

say "mfa-session status"
mfa-session status

say "What the emulator saw"
python - "$demo_home/sts.json.log" <<'PY'
import collections, json, sys
calls = [json.loads(line) for line in open(sys.argv[1])]
for action, count in collections.Counter(call["action"] for call in calls).items():
    print(f"{action}: {count} call(s)")
PY
echo
echo "One MFA code and one GetSessionToken served every call above."

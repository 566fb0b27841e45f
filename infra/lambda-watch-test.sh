#!/usr/bin/env bash
# Runs the three Lambda functions under `cargo lambda watch` on 127.0.0.1 and invokes each one
# through it, against the emulators of infra/emulators.sh and the sandboxes of shared/sandbox:
#   - ecommerce-webhook and erp-webhook get HTTP POSTs on their function URL path. A correctly
#     signed webhook must get HTTP 200 and put one change on the SQS FIFO queue. A wrongly signed
#     one must get HTTP 401 and put nothing there.
#   - reconciler gets both queued changes as one SQS event through `cargo lambda invoke`. It must
#     return no batchItemFailures. Then the storefront sandbox must contain the ERP's new product,
#     the ERP sandbox the storefront's order, and DynamoDB the product's record.
# It prints one PASS or FAIL line per check, keeps the logs of a failed run, and exits 1 when a
# check failed.
#
# Usage, from any folder:
#   infra/emulators.sh start
#   infra/lambda-watch-test.sh
#
# Environment:
#   FIELDSYNC_LAMBDA_WATCH_PORT     port of the ecommerce-webhook server on 127.0.0.1; erp-webhook
#                                   and reconciler take the next two (default 19470)
#   FIELDSYNC_LAMBDA_WATCH_TIMEOUT  seconds to wait for the stack, each server and each request
#                                   (default 60)
#   FIELDSYNC_DDB_PORT, FIELDSYNC_MOTO_PORT  the emulators' ports, as for infra/emulators.sh
#
# Each function gets a watch server of its own. The root Cargo.toml lists only the CLI in
# default-members, so watch can start a function only with --package. And the two receivers
# read different values of the same variables, which one watch server sets per function only
# from [package.metadata.lambda] tables in the functions' Cargo.toml files.
#
# cargo-lambda comes from infra/tools.sh. Its documentation describes no telemetry and no update
# check. Its commands that download (new and init templates, invoke --data-example, zig for
# build, deploy and invoke --remote) are not used here. The servers bind 127.0.0.1 only, every
# request goes to 127.0.0.1, and the functions get fake credentials and explicit endpoints.
set -euo pipefail
shopt -s inherit_errexit

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
cd "$ROOT"

readonly LOOPBACK=127.0.0.1
readonly BASE_PORT="${FIELDSYNC_LAMBDA_WATCH_PORT:-19470}"
readonly TIMEOUT="${FIELDSYNC_LAMBDA_WATCH_TIMEOUT:-60}"
readonly FUNCTIONS=(ecommerce-webhook erp-webhook reconciler)
readonly STOP_TIMEOUT=15

# Fake webhook secrets that the receivers verify signatures with. WRONG_SECRET signs the requests
# they must reject.
readonly STOREFRONT_SECRET=shpss_lambda_watch_fake_secret
readonly ERP_SECRET=erp_lambda_watch_fake_secret
readonly WRONG_SECRET=not_the_configured_secret

# The ERP sends a new item, which the rules create on the storefront. The storefront sends a new
# order, which the rules create in the ERP.
readonly ERP_ITEM='{"id":"evt-lambda-watch-1","type":"item.created","occurred_at":"2025-06-01T10:00:00Z","data":{"number":"LW-CUP","id":"ITEM-77","description":"Lambda watch cup","unit_price":14.25,"inventory":9}}'
readonly STOREFRONT_ORDER='{"id":9001,"name":"#LW1001","email":"buyer@example.com","total_price":"25.00","financial_status":"paid","note":"lambda watch","updated_at":"2025-06-01T10:05:00Z","line_items":[{"sku":"LW-CUP","quantity":2,"price":"12.50"}]}'

log() { printf 'lambda-watch: %s\n' "$*" >&2; }
die() { printf 'lambda-watch: error: %s\n' "$*" >&2; exit 1; }

if ! [[ "$BASE_PORT" =~ ^[1-9][0-9]{0,4}$ ]] || ((BASE_PORT + 2 > 65535)); then
    die "FIELDSYNC_LAMBDA_WATCH_PORT must be a TCP port number up to 65533, got '$BASE_PORT'"
fi
[[ "$TIMEOUT" =~ ^[1-9][0-9]*$ ]] ||
    die "FIELDSYNC_LAMBDA_WATCH_TIMEOUT must be a whole number of seconds, got '$TIMEOUT'"
for tool in curl jq openssl base64 ss; do
    command -v "$tool" >/dev/null || die "$tool is not installed; it is needed for the checks"
done

port_of() {
    local i
    for i in "${!FUNCTIONS[@]}"; do
        if [[ "${FUNCTIONS[$i]}" == "$1" ]]; then
            echo $((BASE_PORT + i))
            return
        fi
    done
    die "no port for $1"
}

port_is_taken() { (exec 3<>"/dev/tcp/$LOOPBACK/$1") 2>/dev/null; }

curl_local() { curl --silent --show-error --noproxy '*' --max-time "$TIMEOUT" "$@"; }

# --- emulators and tools ------------------------------------------------------

# The functions and this script use the fake credentials and endpoints that emulators.sh prints.
# The functions inherit this environment, so no other FIELDSYNC_ variable may reach them.
eval "$(infra/emulators.sh env)"
readonly DYNAMODB_ENDPOINT=$FIELDSYNC_DYNAMODB_ENDPOINT SQS_ENDPOINT=$FIELDSYNC_SQS_ENDPOINT
while read -r variable; do unset "$variable"; done < <(compgen -e FIELDSYNC_)
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
# AWS_ENDPOINT_URL is the AWS SDKs' endpoint for every service without an AWS_ENDPOINT_URL_<SERVICE>
# of its own, so a call to any other service goes to moto and not to AWS.
export AWS_ENDPOINT_URL=$SQS_ENDPOINT

# Sends one DynamoDB or SQS JSON-protocol request: aws_json SERVICE TARGET BODY. Neither
# emulator checks signatures, so a fixed Authorization header naming the fake key suffices.
aws_json() {
    local endpoint=$DYNAMODB_ENDPOINT scope=dynamodb
    if [[ $1 == sqs ]]; then
        endpoint=$SQS_ENDPOINT
        scope=sqs
    fi
    curl_local -X POST "$endpoint/" \
        -H 'Content-Type: application/x-amz-json-1.0' \
        -H "X-Amz-Target: $2" \
        -H "Authorization: AWS4-HMAC-SHA256 Credential=$AWS_ACCESS_KEY_ID/20250101/$AWS_REGION/$scope/aws4_request, SignedHeaders=host, Signature=0" \
        --data "$3"
}

if ! aws_json dynamodb DynamoDB_20120810.ListTables '{}' >/dev/null 2>&1 ||
    ! aws_json sqs AmazonSQS.ListQueues '{}' >/dev/null 2>&1; then
    die "no emulator responds at $DYNAMODB_ENDPOINT and $SQS_ENDPOINT; start them with: infra/emulators.sh start"
fi

tools=$(infra/tools.sh)
"$tools/bin/cargo-lambda" lambda --version >/dev/null || die "$tools/bin/cargo-lambda does not run"

for function in "${FUNCTIONS[@]}"; do
    port=$(port_of "$function")
    ! port_is_taken "$port" ||
        die "$LOOPBACK:$port is taken (inspect it with: ss -ltnp 'sport = :$port'); set FIELDSYNC_LAMBDA_WATCH_PORT"
done

# --- build --------------------------------------------------------------------

# The stack helper is a workspace of its own. It builds into the root target directory, and its
# lock must contain only versions from the root lock, so that both share compiled dependencies.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
readonly STACK_MANIFEST=infra/lambda-watch/Cargo.toml
readonly STACK_LOCK=infra/lambda-watch/Cargo.lock
readonly REFRESH_LOCK="cp Cargo.lock $STACK_LOCK && cargo metadata --format-version 1 --manifest-path $STACK_MANIFEST >/dev/null"
locked_versions() { awk '/^name = /{name=$3} /^version = /{print name, $3}' "$1" | LC_ALL=C sort -u; }
drift=$(LC_ALL=C comm -13 <(locked_versions Cargo.lock) <(locked_versions "$STACK_LOCK") |
    grep -v '^"fieldsync-lambda-watch-stack" ' || true)
[[ -z "$drift" ]] || die "$STACK_LOCK has versions that Cargo.lock lacks: $(tr '\n' ' ' <<<"$drift");" \
    "refresh it with: $REFRESH_LOCK"

cargo fmt --manifest-path "$STACK_MANIFEST" --check >&2 || die "run: cargo fmt --manifest-path $STACK_MANIFEST"

started=$SECONDS
log "building the stack helper and the functions (debug profile, $CARGO_TARGET_DIR)"
cargo build --locked --quiet --manifest-path "$STACK_MANIFEST" ||
    die "the stack helper does not build; if Cargo.lock gained packages, refresh $STACK_LOCK with: $REFRESH_LOCK"
package_args=()
for function in "${FUNCTIONS[@]}"; do package_args+=(--package "$function"); done
cargo build --locked --quiet "${package_args[@]}"
build_secs=$((SECONDS - started))

# --- processes ----------------------------------------------------------------

run_dir=$(mktemp -d "${TMPDIR:-/tmp}/fieldsync-lambda-watch.XXXXXX")
stack_pid=""
watch_pids=()
passed=0
failed=0

# Prints the PIDs of the children of each given PID, and of their children.
descendants() {
    local pid child
    for pid in "$@"; do
        for child in $(ps -o pid= --ppid "$pid" 2>/dev/null || true); do
            echo "$child"
            descendants "$child"
        done
    done
}

# Sends SIGTERM to each PID, waits up to STOP_TIMEOUT seconds, then sends SIGKILL to the rest.
terminate() {
    local pid waited=0 alive
    (($# > 0)) || return 0
    kill -TERM "$@" 2>/dev/null || true
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

# Stops the watch servers with the functions they started, then the stack, which deletes its
# table and queues on SIGTERM. Keeps the logs of a failed run.
cleanup() {
    local status=$? pids=() file
    if ((${#watch_pids[@]} > 0)); then
        mapfile -t pids < <(descendants "${watch_pids[@]}")
        terminate "${watch_pids[@]}"
        terminate "${pids[@]}"
    fi
    if [[ -n "$stack_pid" ]]; then terminate "$stack_pid"; fi
    if ((status == 0 && failed == 0)); then
        rm -rf "$run_dir"
    else
        for file in "$run_dir"/*.log; do
            [[ -s "$file" ]] || continue
            printf '\n--- last lines of %s\n' "$file" >&2
            tail -n 15 "$file" >&2
        done
        log "logs kept in $run_dir"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Fails unless every TCP socket the process listens on is on 127.0.0.1.
check_loopback_only() {
    local pid=$1 title=$2 address
    for address in $(ss -Hltnp 2>/dev/null | awk -v tag="pid=$pid," 'index($0, tag) { print $4 }'); do
        [[ "$address" == "$LOOPBACK:"* ]] || die "$title listens on $address, not on $LOOPBACK only"
    done
}

# Waits until the file exists or the process is gone or the timeout passed.
wait_for_file() {
    local file=$1 pid=$2 title=$3 deadline=$((SECONDS + TIMEOUT))
    until [[ -f "$file" ]]; do
        kill -0 "$pid" 2>/dev/null || die "$title (pid $pid) exited during start-up"
        ((SECONDS < deadline)) || die "$title did not start within ${TIMEOUT}s"
        sleep 0.2
    done
}

wait_for_port() {
    local port=$1 pid=$2 title=$3 deadline=$((SECONDS + TIMEOUT))
    until port_is_taken "$port"; do
        kill -0 "$pid" 2>/dev/null || die "$title (pid $pid) exited during start-up"
        ((SECONDS < deadline)) || die "$title does not listen on $LOOPBACK:$port after ${TIMEOUT}s"
        sleep 0.2
    done
    check_loopback_only "$pid" "$title"
}

started=$SECONDS
name="fieldsync-lambda-watch-$$-$(date +%s)"
FIELDSYNC_DYNAMODB_ENDPOINT=$DYNAMODB_ENDPOINT FIELDSYNC_SQS_ENDPOINT=$SQS_ENDPOINT \
    "$CARGO_TARGET_DIR/debug/lambda-watch-stack" "$run_dir/stack.env" "$name" >"$run_dir/stack.log" 2>&1 &
stack_pid=$!
wait_for_file "$run_dir/stack.env" "$stack_pid" "lambda-watch-stack"
check_loopback_only "$stack_pid" "lambda-watch-stack"
# shellcheck source=/dev/null
source "$run_dir/stack.env"

# Writes NAME="VALUE" lines for `--env-file`. The quotes are needed because values such as the
# connection list contain `=` and `,`.
env_lines() {
    while (($# >= 2)); do
        printf '%s="%s"\n' "$1" "$2"
        shift 2
    done
}

common_env() {
    env_lines \
        FIELDSYNC_RULES_FILE "$ROOT/rules.toml" \
        AWS_ACCESS_KEY_ID "$AWS_ACCESS_KEY_ID" \
        AWS_SECRET_ACCESS_KEY "$AWS_SECRET_ACCESS_KEY" \
        AWS_REGION "$AWS_REGION" \
        AWS_EC2_METADATA_DISABLED true \
        AWS_CONFIG_FILE /dev/null \
        AWS_SHARED_CREDENTIALS_FILE /dev/null \
        AWS_ENDPOINT_URL "$SQS_ENDPOINT" \
        AWS_ENDPOINT_URL_DYNAMODB "$DYNAMODB_ENDPOINT" \
        AWS_ENDPOINT_URL_SQS "$SQS_ENDPOINT"
}

{
    common_env
    env_lines \
        FIELDSYNC_SOURCE_SYSTEM storefront \
        FIELDSYNC_WEBHOOK_FORMAT shopify \
        FIELDSYNC_WEBHOOK_SECRETS "$STOREFRONT_SECRET" \
        FIELDSYNC_QUEUE_URL "$FIELDSYNC_QUEUE_URL"
} >"$run_dir/ecommerce-webhook.env"
{
    common_env
    env_lines \
        FIELDSYNC_SOURCE_SYSTEM erp \
        FIELDSYNC_WEBHOOK_FORMAT signed-json \
        FIELDSYNC_WEBHOOK_SECRETS "$ERP_SECRET" \
        FIELDSYNC_QUEUE_URL "$FIELDSYNC_QUEUE_URL"
} >"$run_dir/erp-webhook.env"
{
    common_env
    env_lines \
        FIELDSYNC_TABLE_NAME "$FIELDSYNC_TABLE_NAME" \
        FIELDSYNC_CONNECTIONS storefront=shopify,erp=erp-rest \
        FIELDSYNC_STOREFRONT_BASE_URL "$FIELDSYNC_STOREFRONT_BASE_URL" \
        FIELDSYNC_STOREFRONT_TOKEN "$FIELDSYNC_STOREFRONT_TOKEN" \
        FIELDSYNC_ERP_BASE_URL "$FIELDSYNC_ERP_BASE_URL" \
        FIELDSYNC_ERP_TOKEN "$FIELDSYNC_ERP_TOKEN"
} >"$run_dir/reconciler.env"

# --ignore-changes keeps the servers from rebuilding while someone edits the tree.
for function in "${FUNCTIONS[@]}"; do
    "$tools/bin/cargo-lambda" lambda watch \
        --invoke-address "$LOOPBACK" --invoke-port "$(port_of "$function")" \
        --ignore-changes --package "$function" --locked \
        --env-file "$run_dir/$function.env" \
        >"$run_dir/watch-$function.log" 2>&1 </dev/null &
    watch_pids+=($!)
done
for i in "${!FUNCTIONS[@]}"; do
    wait_for_port "$(port_of "${FUNCTIONS[$i]}")" "${watch_pids[$i]}" "cargo lambda watch for ${FUNCTIONS[$i]}"
done
log "stack and watch servers ready in $((SECONDS - started))s (logs: $run_dir)"

# --- checks -------------------------------------------------------------------

pass() {
    echo "PASS: $1"
    passed=$((passed + 1))
}

fail() {
    echo "FAIL: $1"
    if [[ -n "${2:-}" && -s "$2" ]]; then head -c 1500 "$2" | head -n 20 | awk '{ print "    " $0 }'; fi
    failed=$((failed + 1))
}

# Passes when jq's FILTER is true for FILE: expect DESCRIPTION FILE FILTER
expect() {
    if jq -e "$3" "$2" >/dev/null 2>&1; then pass "$1"; else fail "$1" "$2"; fi
}

hmac_base64() { printf '%s' "$2" | openssl dgst -sha256 -hmac "$1" -binary | base64 -w0; }

# POSTs BODY to FUNCTION's URL path with the given extra curl arguments, writes the response
# body to OUT and sets `status` to the HTTP status, 000 when no response came. A function that
# did not respond once, for example because it failed at start-up, gets no further requests, so
# a broken function costs one timeout and not one per request.
declare -A silent=()
status=""
post_webhook() {
    local function=$1 body=$2 out=$3
    shift 3
    if [[ -n "${silent[$function]:-}" ]]; then
        echo "$function did not respond to an earlier request; see its watch log" >"$out"
        status=000
        return
    fi
    status=$(curl_local -o "$out" -w '%{http_code}' -X POST \
        "http://$LOOPBACK:$(port_of "$function")/lambda-url/$function/" \
        -H 'Content-Type: application/json' "$@" --data-binary "$body" || true)
    if [[ "$status" == 000 ]]; then silent[$function]=1; fi
}

expect_status() {
    local description=$1 want=$2 got=$3 out=$4
    if [[ "$got" == "$want" ]]; then
        pass "$description: HTTP $got"
    else
        fail "$description: HTTP $got, expected $want" "$out"
    fi
}

# Writes the messages that one ReceiveMessage call returns to OUT. Received messages stay hidden
# for the rest of the run.
receive_changes() {
    aws_json sqs AmazonSQS.ReceiveMessage \
        "{\"QueueUrl\":\"$FIELDSYNC_QUEUE_URL\",\"MaxNumberOfMessages\":10,\"WaitTimeSeconds\":1,\"AttributeNames\":[\"All\"]}" \
        >"$1" || echo '{}' >"$1"
}

checks_started=$SECONDS

out="$run_dir/storefront-rejected.json"
post_webhook ecommerce-webhook "$STOREFRONT_ORDER" "$out" \
    -H 'X-Shopify-Topic: orders/create' -H 'X-Shopify-Webhook-Id: lambda-watch-rejected' \
    -H "X-Shopify-Hmac-Sha256: $(hmac_base64 "$WRONG_SECRET" "$STOREFRONT_ORDER")"
expect_status "ecommerce-webhook rejects a wrong X-Shopify-Hmac-Sha256" 401 "$status" "$out"

out="$run_dir/storefront-accepted.json"
post_webhook ecommerce-webhook "$STOREFRONT_ORDER" "$out" \
    -H 'X-Shopify-Topic: orders/create' -H 'X-Shopify-Webhook-Id: lambda-watch-order' \
    -H "X-Shopify-Hmac-Sha256: $(hmac_base64 "$STOREFRONT_SECRET" "$STOREFRONT_ORDER")"
expect_status "ecommerce-webhook accepts a signed orders/create" 200 "$status" "$out"

receive_changes "$run_dir/queue-storefront.json"
expect "the queue contains only the storefront's order" "$run_dir/queue-storefront.json" \
    '(.Messages | length) == 1 and (.Messages[0].Body | fromjson | .source == "storefront" and .record.entity == "order" and .record.key == "9001")'

# The rejected body has an event id of its own, so that a wrongly queued copy shows up as a
# second message in the queue check below instead of being dropped by FIFO deduplication.
timestamp=$(date +%s)
rejected_item=${ERP_ITEM/evt-lambda-watch-1/evt-lambda-watch-rejected}
out="$run_dir/erp-rejected.json"
post_webhook erp-webhook "$rejected_item" "$out" -H "X-Fieldsync-Timestamp: $timestamp" \
    -H "X-Fieldsync-Signature: v1=$(hmac_base64 "$WRONG_SECRET" "$timestamp.$rejected_item")"
expect_status "erp-webhook rejects a wrong X-Fieldsync-Signature" 401 "$status" "$out"

out="$run_dir/erp-accepted.json"
post_webhook erp-webhook "$ERP_ITEM" "$out" -H "X-Fieldsync-Timestamp: $timestamp" \
    -H "X-Fieldsync-Signature: v1=$(hmac_base64 "$ERP_SECRET" "$timestamp.$ERP_ITEM")"
expect_status "erp-webhook accepts a signed item.created" 200 "$status" "$out"

receive_changes "$run_dir/queue-erp.json"
expect "the queue contains only the ERP's item" "$run_dir/queue-erp.json" \
    '(.Messages | length) == 1 and (.Messages[0].Body | fromjson | .source == "erp" and .record.entity == "product" and .record.key == "LW-CUP")'

# The SQS trigger's event for both received messages, in the shape Lambda delivers.
queue_arn="arn:aws:sqs:$AWS_REGION:$(basename "$(dirname "$FIELDSYNC_QUEUE_URL")"):$(basename "$FIELDSYNC_QUEUE_URL")"
jq -s --arg arn "$queue_arn" --arg region "$AWS_REGION" '{Records: [.[].Messages // [] | .[] | {
        messageId: .MessageId, receiptHandle: .ReceiptHandle, body: .Body, md5OfBody: .MD5OfBody,
        attributes: .Attributes, messageAttributes: {}, eventSource: "aws:sqs",
        eventSourceARN: $arn, awsRegion: $region}]}' \
    "$run_dir/queue-storefront.json" "$run_dir/queue-erp.json" >"$run_dir/sqs-event.json"

if [[ "$(jq '.Records | length' "$run_dir/sqs-event.json")" == 2 ]]; then
    out="$run_dir/reconciler-response.json"
    if timeout "$TIMEOUT" "$tools/bin/cargo-lambda" lambda invoke reconciler \
        --data-file "$run_dir/sqs-event.json" --output-format json \
        --invoke-address "$LOOPBACK" --invoke-port "$(port_of reconciler)" \
        >"$out" 2>"$run_dir/invoke.log"; then
        expect "reconciler returns no batchItemFailures for the SQS event" "$out" \
            '(.batchItemFailures | type) == "array" and (.batchItemFailures | length) == 0'
    else
        fail "reconciler invocation failed (cargo lambda invoke exited non-zero)" "$run_dir/invoke.log"
    fi

    curl_local "$FIELDSYNC_STOREFRONT_BASE_URL/_sandbox/state" >"$run_dir/storefront-state.json" || true
    expect "the storefront sandbox contains product LW-CUP as the ERP sent it" "$run_dir/storefront-state.json" \
        '.products | any(.title == "Lambda watch cup" and any(.variants[]; .sku == "LW-CUP" and .price == "14.25" and .inventory_quantity == 9))'

    curl_local "$FIELDSYNC_ERP_BASE_URL/_sandbox/state" >"$run_dir/erp-state.json" || true
    expect "the ERP sandbox contains order 9001 as the storefront sent it" "$run_dir/erp-state.json" \
        '.sales_orders | any(.external_id == "order:9001" and .total == 25 and .lines == [{"sku": "LW-CUP", "quantity": 2, "unit_price": 12.5}])'

    aws_json dynamodb DynamoDB_20120810.GetItem \
        "{\"TableName\":\"$FIELDSYNC_TABLE_NAME\",\"Key\":{\"pk\":{\"S\":\"REC#demo#product#LW-CUP\"},\"sk\":{\"S\":\"STATE\"}}}" \
        >"$run_dir/record.json" || true
    expect "DynamoDB contains record LW-CUP with its ERP and storefront ids" "$run_dir/record.json" \
        '.Item.doc.S | fromjson | .ids.erp == "ITEM-77" and (.ids.storefront | type) == "string"'
else
    fail "reconciler not invoked: the queue did not yield both changes"
fi

echo "lambda watch: $passed passed, $failed failed (builds ${build_secs}s, checks $((SECONDS - checks_started))s)"
((failed == 0))

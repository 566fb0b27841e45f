#!/usr/bin/env bash
# Starts both emulators (infra/emulators.sh start), then sends one real request
# to each: CreateTable to DynamoDB Local and CreateQueue for a FIFO queue to
# moto's SQS. Deletes what it created. Talks to 127.0.0.1 only.
# Exits 1 with the response body when a request fails.
set -euo pipefail
shopt -s inherit_errexit

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly INFRA_DIR

"$INFRA_DIR/emulators.sh" start
eval "$("$INFRA_DIR/emulators.sh" env)"

# DynamoDB Local 3.3.0 rejects access key IDs that are not [A-Za-z0-9]+.
readonly DDB_ACCESS_KEY_ID=fieldsynctest
readonly TABLE="fieldsync_smoke_$$"
readonly QUEUE="fieldsync-smoke-$$.fifo"

fail() {
    printf 'FAIL %s\n%s\n' "$1" "$2" >&2
    exit 1
}

# Sends one DynamoDB JSON request: dynamodb ACTION BODY
dynamodb() {
    curl --silent --show-error --noproxy '*' --max-time 10 -X POST "$FIELDSYNC_DYNAMODB_ENDPOINT/" \
        -H 'Content-Type: application/x-amz-json-1.0' \
        -H "X-Amz-Target: DynamoDB_20120810.$1" \
        -H "Authorization: AWS4-HMAC-SHA256 Credential=$DDB_ACCESS_KEY_ID/20250101/$AWS_REGION/dynamodb/aws4_request, SignedHeaders=host, Signature=0" \
        --data "$2"
}

# Sends one SQS query-protocol request with the given form fields.
sqs() {
    local fields=()
    for field in "$@"; do fields+=(--data-urlencode "$field"); done
    curl --silent --show-error --noproxy '*' --max-time 10 -X POST "$FIELDSYNC_SQS_ENDPOINT/" \
        -H "Authorization: AWS4-HMAC-SHA256 Credential=$AWS_ACCESS_KEY_ID/20250101/$AWS_REGION/sqs/aws4_request, SignedHeaders=host, Signature=0" \
        "${fields[@]}"
}

response=$(dynamodb CreateTable "{\"TableName\":\"$TABLE\",
    \"AttributeDefinitions\":[{\"AttributeName\":\"pk\",\"AttributeType\":\"S\"}],
    \"KeySchema\":[{\"AttributeName\":\"pk\",\"KeyType\":\"HASH\"}],
    \"BillingMode\":\"PAY_PER_REQUEST\"}")
[[ "$response" == *'"TableStatus":"ACTIVE"'* ]] || fail "DynamoDB Local CreateTable $TABLE" "$response"
response=$(dynamodb DeleteTable "{\"TableName\":\"$TABLE\"}")
[[ "$response" == *"\"TableName\":\"$TABLE\""* ]] || fail "DynamoDB Local DeleteTable $TABLE" "$response"
echo "OK DynamoDB Local at $FIELDSYNC_DYNAMODB_ENDPOINT: created and deleted table $TABLE"

response=$(sqs Action=CreateQueue "QueueName=$QUEUE" \
    Attribute.1.Name=FifoQueue Attribute.1.Value=true \
    Attribute.2.Name=ContentBasedDeduplication Attribute.2.Value=true)
queue_url=$(sed -n 's:.*<QueueUrl>\([^<]*\)</QueueUrl>.*:\1:p' <<<"$response")
[[ "$queue_url" == *"/$QUEUE" ]] || fail "moto SQS CreateQueue $QUEUE" "$response"
response=$(sqs Action=GetQueueAttributes "QueueUrl=$queue_url" AttributeName.1=FifoQueue)
[[ "$response" == *'<Name>FifoQueue</Name><Value>true</Value>'* ]] ||
    fail "moto SQS GetQueueAttributes: $QUEUE is not a FIFO queue" "$response"
response=$(sqs Action=DeleteQueue "QueueUrl=$queue_url")
[[ "$response" == *'DeleteQueueResponse'* ]] || fail "moto SQS DeleteQueue $QUEUE" "$response"
echo "OK moto SQS at $FIELDSYNC_SQS_ENDPOINT: created and deleted FIFO queue $QUEUE"

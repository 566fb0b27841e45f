"""Checks the SAM template's settings that deployments rely on.

Run with the tools venv's Python, which has cfn-lint and its YAML loader for CloudFormation's
short-form tags (!Ref, !GetAtt, !Sub). Prints one line per check and exits non-zero on a failure.
"""

import sys

from cfnlint.decode import cfn_yaml

FUNCTIONS = {
    "EcommerceWebhookFunction": "ecommerce-webhook",
    "ErpWebhookFunction": "erp-webhook",
    "ReconcilerFunction": "reconciler",
}


def main(path):
    template = cfn_yaml.load(path)
    resources = template["Resources"]
    parameters = template["Parameters"]
    globals_function = template.get("Globals", {}).get("Function", {})
    failures = []

    def check(name, condition):
        print(("ok   " if condition else "FAIL ") + name)
        if not condition:
            failures.append(name)

    check("architecture is a parameter defaulting to arm64", parameters["Architecture"]["Default"] == "arm64")
    check("functions run on provided.al2023", globals_function.get("Runtime") == "provided.al2023")
    for logical_id, binary in FUNCTIONS.items():
        function = resources[logical_id]
        metadata = function.get("Metadata", {})
        check(f"{logical_id} builds with rust-cargolambda", metadata.get("BuildMethod") == "rust-cargolambda")
        check(f"{logical_id} builds binary {binary}", metadata.get("BuildProperties", {}).get("Binary") == binary)
        log_groups = [
            resource for resource in resources.values()
            if resource["Type"] == "AWS::Logs::LogGroup" and logical_id in str(resource["Properties"]["LogGroupName"])
        ]
        check(f"{logical_id} has a log group with retention", len(log_groups) == 1 and "RetentionInDays" in log_groups[0]["Properties"])
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        plaintext = [name for name in variables if name.endswith(("_SECRETS", "_SECRET", "_TOKEN"))]
        check(f"{logical_id} has no secret or token in its environment", not plaintext)
        for policy in function["Properties"].get("Policies", []):
            statements = policy.get("Statement", []) if isinstance(policy, dict) else []
            wildcard = [s for s in statements if s.get("Action") in ("*", ["*"])]
            check(f"{logical_id} grants no '*' action", not wildcard)

    queue = resources["ChangesQueue"]["Properties"]
    dead_letters = resources["ChangesDeadLetterQueue"]["Properties"]
    check("changes queue is FIFO", queue.get("FifoQueue") is True)
    check("dead-letter queue is FIFO", dead_letters.get("FifoQueue") is True)
    check("changes queue redrives to the dead-letter queue", "RedrivePolicy" in queue)
    timeout = parameters["ReconcilerTimeoutSeconds"]["Default"]
    check("visibility timeout is at least six reconciler timeouts", queue["VisibilityTimeout"] >= 6 * timeout)

    events = resources["ReconcilerFunction"]["Properties"]["Events"]
    sqs = [event["Properties"] for event in events.values() if event["Type"] == "SQS"]
    check("reconciler has one SQS event source", len(sqs) == 1)
    check("SQS event source reports batch item failures", sqs[0].get("FunctionResponseTypes") == ["ReportBatchItemFailures"])
    check("SQS event source has a maximum concurrency", "MaximumConcurrency" in sqs[0].get("ScalingConfig", {}))

    table = resources["StateTable"]["Properties"]
    check("table is on-demand", table.get("BillingMode") == "PAY_PER_REQUEST")
    check("table has TTL on ttl", table.get("TimeToLiveSpecification") == {"AttributeName": "ttl", "Enabled": True})
    check(
        "table has point-in-time recovery",
        table.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled") is True,
    )
    check("rules file is a parameter", "RulesFile" in parameters)

    if failures:
        print(f"template check: {len(failures)} failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "template.yaml"))

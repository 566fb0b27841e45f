"""Checks the SAM template's settings that deployments rely on.

Run with the tools venv's Python, which has cfn-lint and its YAML loader for CloudFormation's
short-form tags (!Ref, !GetAtt, !Sub). Prints one line per check and exits non-zero on a failure.
"""

import os
import re
import sys

from cfnlint.decode import cfn_yaml

FUNCTIONS = {
    "EcommerceWebhookFunction": "ecommerce-webhook",
    "ErpWebhookFunction": "erp-webhook",
    "ReconcilerFunction": "reconciler",
    "SubscriptionRenewerFunction": "subscription-renewer",
}

# Functions that build the generic format or connector from the connector file.
CONNECTOR_FILE_READERS = {"ErpWebhookFunction", "ReconcilerFunction"}

ALARMS = [
    "DeadLetterQueueNotEmpty",
    "OldestChangeTooOld",
    "RejectedSignatureRate",
    "OutboundErrorRate",
    "StorefrontSilence",
    "ErpSilence",
]

# The DynamoDB calls DynamoStore makes; anything more (Scan, DeleteItem…) is not least privilege.
RECONCILER_TABLE_ACTIONS = {
    "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:BatchWriteItem",
}

# SAM policy templates that grant more than fieldsync uses.
BROAD_POLICY_TEMPLATES = {"DynamoDBCrudPolicy", "AmazonDynamoDBFullAccess", "AmazonSQSFullAccess", "SecretsManagerReadWrite"}


def refs(value):
    """Returns the names a value refers to through Ref, GetAtt or Sub."""
    text = str(value)
    names = set(re.findall(r"'Ref': '([A-Za-z0-9]+)'", text))
    names |= set(re.findall(r"'Fn::GetAtt': \['([A-Za-z0-9]+)'", text))
    return names | set(re.findall(r"\$\{([A-Za-z0-9]+)[.}]", text))


def as_list(value):
    return value if isinstance(value, list) else [value]


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
        for name, value in variables.items():
            if name.endswith("_ARN"):
                pattern = parameters.get(next(iter(refs(value)), ""), {}).get("AllowedPattern", "")
                check(f"{logical_id} reads {name} from a Secrets Manager ARN parameter", "secretsmanager" in pattern)
        policies = function["Properties"].get("Policies", [])
        broad = [name for policy in policies for name in (policy if isinstance(policy, dict) else {policy: None})
                 if name in BROAD_POLICY_TEMPLATES]
        check(f"{logical_id} uses no broad policy template", not broad)
        statements = [s for policy in policies if isinstance(policy, dict) for s in policy.get("Statement", [])]
        actions = [a for s in statements for a in as_list(s.get("Action", []))]
        check(f"{logical_id} grants no '*' action", not [a for a in actions if a == "*" or a.endswith(":*")])
        check(f"{logical_id} grants nothing on every resource", not [s for s in statements if "*" in as_list(s.get("Resource"))])
        secret_grants = {str(p["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"]) for p in policies
                         if isinstance(p, dict) and "AWSSecretsManagerGetSecretValuePolicy" in p}
        needed = {str(v) for n, v in variables.items() if n.endswith("_ARN")}
        check(f"{logical_id} may read exactly the secrets it names", secret_grants == needed)
        rules_read = [s for s in statements if "ssm:GetParameter" in as_list(s.get("Action"))]
        # The ERP receiver and the reconciler read the generic connector file too, and only when
        # ErpPlatform is generic (an !If on the IsGenericErp condition).
        allowed = {"RulesParameterName"}
        if logical_id in CONNECTOR_FILE_READERS:
            allowed.add("ConnectorParameterName")
        parameter_refs = refs(rules_read[0]["Resource"]) if len(rules_read) == 1 else set()
        check(f"{logical_id} may read the rules parameter and nothing else it does not need",
              "RulesParameterName" in parameter_refs and parameter_refs <= allowed)
        connector_variable = variables.get("FIELDSYNC_CONNECTOR_PARAMETER")
        if logical_id in CONNECTOR_FILE_READERS:
            check(f"{logical_id} reads the connector file only for the generic ERP",
                  "ConnectorParameterName" in parameter_refs
                  and "ConnectorParameterName" in refs(connector_variable)
                  and all("'Fn::If': ['IsGenericErp'" in str(value) for value in (connector_variable, rules_read[0]["Resource"])))
        else:
            check(f"{logical_id} does not read the connector file", connector_variable is None)

    table_statements = [
        s for policy in resources["ReconcilerFunction"]["Properties"]["Policies"] if isinstance(policy, dict)
        for s in policy.get("Statement", []) if any(str(a).startswith("dynamodb:") for a in as_list(s.get("Action")))
    ]
    check("reconciler has exactly the table calls it makes",
          len(table_statements) == 1 and set(as_list(table_statements[0]["Action"])) == RECONCILER_TABLE_ACTIONS
          and refs(table_statements[0]["Resource"]) == {"StateTable"})
    receivers_send_only = all(
        [list(p) for p in resources[f]["Properties"]["Policies"] if isinstance(p, dict) and "SQSSendMessagePolicy" in p]
        for f in ("EcommerceWebhookFunction", "ErpWebhookFunction")
    )
    check("receivers may send to the changes queue", receivers_send_only)

    routes = sorted(
        event["Properties"]["Path"] for f in FUNCTIONS for event in resources[f]["Properties"].get("Events", {}).values()
        if event["Type"] == "HttpApi"
    )
    check("one HTTP route per side", routes == ["/webhooks/{integration}/erp", "/webhooks/{integration}/storefront"])
    plaintext_parameters = [
        name for name, parameter in parameters.items()
        if re.search(r"(Secret|Token|Password)", name) and "secretsmanager" not in parameter.get("AllowedPattern", "")
    ]
    check("no secret is a plaintext parameter", not plaintext_parameters)

    queue = resources["ChangesQueue"]["Properties"]
    dead_letters = resources["ChangesDeadLetterQueue"]["Properties"]
    check("changes queue is FIFO", queue.get("FifoQueue") is True)
    check("dead-letter queue is FIFO", dead_letters.get("FifoQueue") is True)
    check("changes queue redrives to the dead-letter queue", "RedrivePolicy" in queue)
    timeout = parameters["ReconcilerTimeoutSeconds"]
    check("visibility timeout is at least six of the longest reconciler timeout allowed",
          "MaxValue" in timeout and queue["VisibilityTimeout"] >= 6 * timeout["MaxValue"])

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
    check("rules file's source is a parameter", refs(globals_function["Environment"]["Variables"]["FIELDSYNC_RULES_PARAMETER"]) == {"RulesParameterName"})
    check("table outlives the stack", resources["StateTable"].get("DeletionPolicy") == "Retain")

    runbook_path = os.path.join(os.path.dirname(os.path.abspath(path)), "docs", "runbook.md")
    runbook = open(runbook_path, encoding="utf-8").read() if os.path.exists(runbook_path) else ""
    for alarm in ALARMS:
        resource = resources.get(alarm, {})
        check(f"alarm {alarm} exists", resource.get("Type") == "AWS::CloudWatch::Alarm")
        properties = resource.get("Properties", {})
        check(f"alarm {alarm} notifies the alarm topic",
              refs(properties.get("AlarmActions")) == {"AlarmTopicArn"} and refs(properties.get("OKActions")) == {"AlarmTopicArn"})
        check(f"alarm {alarm} has a runbook entry", re.search(rf"^#+ .*\b{alarm}\b", runbook, re.MULTILINE) is not None)
    renewer = resources["SubscriptionRenewerFunction"]
    schedules = [e["Properties"].get("Schedule") for e in renewer["Properties"]["Events"].values() if e["Type"] == "Schedule"]
    check("subscription renewer runs at least daily", schedules == ["rate(12 hours)"])
    check("subscription renewer exists only for Business Central", renewer.get("Condition") == "IsBusinessCentral")
    check("dashboard exists", resources.get("Dashboard", {}).get("Type") == "AWS::CloudWatch::Dashboard")

    if failures:
        print(f"template check: {len(failures)} failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "template.yaml"))

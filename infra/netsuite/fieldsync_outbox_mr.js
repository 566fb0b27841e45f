/**
 * Delivers undelivered rows of fieldsync's outbox custom record to fieldsync's webhook, in
 * signed batches. A row is marked delivered only after fieldsync responds with 2xx. When a
 * batch gets 400 (a row fieldsync cannot read), its rows are sent again one at a time. A row that
 * gets 400 alone is marked rejected and fieldsync's response is logged, so it no longer blocks
 * the others. Any other outcome leaves the rows for the next run, which signs them again with a
 * fresh timestamp.
 *
 * Script parameter:
 * - custscript_fieldsync_webhook_url: fieldsync's ERP webhook URL,
 *   https://<api>/webhooks/<integration>/erp.
 * API secret (Setup > Company > API Secrets), shared with fieldsync:
 * - custsecret_fieldsync_outbox.
 *
 * @NApiVersion 2.1
 * @NScriptType MapReduceScript
 * @NModuleScope SameAccount
 */
define(['N/search', 'N/record', 'N/runtime', 'N/https', 'N/crypto', 'N/encode', 'N/log'], (
    search,
    record,
    runtime,
    https,
    crypto,
    encode,
    log
) => {
    const OUTBOX = 'customrecord_fieldsync_outbox';
    const SECRET_ID = 'custsecret_fieldsync_outbox';
    /** Rows per delivery; consecutive row ids share a batch. */
    const BATCH_SIZE = 50;

    const getInputData = () =>
        search.create({
            type: OUTBOX,
            filters: [['custrecord_fs_delivered', 'is', 'F'], 'and', ['custrecord_fs_rejected', 'is', 'F']],
            columns: [search.createColumn({ name: 'internalid', sort: search.Sort.ASC }), 'custrecord_fs_event'],
        });

    const map = (context) => {
        const result = JSON.parse(context.value);
        const rowId = Number(result.id);
        context.write({
            key: String(Math.floor(rowId / BATCH_SIZE)),
            value: { rowId, event: result.values.custrecord_fs_event },
        });
    };

    /** Returns base64 HMAC-SHA256 of `<timestamp>.<body>`, keyed with the API secret. */
    const sign = (timestamp, body) => {
        const key = crypto.createSecretKey({ secret: SECRET_ID, encoding: encode.Encoding.UTF_8 });
        const hmac = crypto.createHmac({ algorithm: crypto.HashAlg.SHA256, key });
        hmac.update({ input: `${timestamp}.${body}`, inputEncoding: encode.Encoding.UTF_8 });
        return hmac.digest({ outputEncoding: encode.Encoding.BASE_64 });
    };

    /** Posts rows as one signed delivery and returns the HTTP status, or 0 when no response came. */
    const post = (rows) => {
        // The outbox row id is the event id, identical on every retry of the row.
        const events = rows.map((row) => Object.assign({ eventId: `ns-outbox-${row.rowId}` }, JSON.parse(row.event)));
        const body = JSON.stringify({
            account: runtime.accountId,
            deliveryId: `dlv-${rows[0].rowId}-${rows.length}`,
            events,
        });
        const timestamp = Math.floor(Date.now() / 1000);
        const url = runtime.getCurrentScript().getParameter({ name: 'custscript_fieldsync_webhook_url' });
        try {
            const response = https.post({
                url,
                body,
                headers: {
                    'Content-Type': 'application/json',
                    'X-Fieldsync-Netsuite-Timestamp': String(timestamp),
                    'X-Fieldsync-Netsuite-Signature': `v1=${sign(timestamp, body)}`,
                },
            });
            if (response.code === 400) {
                log.error({ title: 'fieldsync rejected a delivery', details: response.body });
            }
            return response.code;
        } catch (error) {
            log.error({ title: 'fieldsync delivery failed', details: `${rows.length} rows: ${error.message}` });
            return 0;
        }
    };

    const mark = (row, field) => {
        record.submitFields({ type: OUTBOX, id: row.rowId, values: { [field]: true } });
    };

    const reduce = (context) => {
        const rows = context.values.map((value) => JSON.parse(value));
        const code = post(rows);
        if (code >= 200 && code < 300) {
            rows.forEach((row) => mark(row, 'custrecord_fs_delivered'));
            return;
        }
        if (code !== 400) {
            log.error({ title: 'fieldsync delivery not accepted', details: `HTTP ${code} for ${rows.length} rows; left for the next run` });
            return;
        }
        // One unreadable row fails its whole batch, so each row is sent alone to find it.
        rows.forEach((row) => {
            const alone = rows.length === 1 ? code : post([row]);
            if (alone >= 200 && alone < 300) {
                mark(row, 'custrecord_fs_delivered');
            } else if (alone === 400) {
                log.error({ title: 'fieldsync outbox row rejected', details: `row ${row.rowId}: ${row.event}` });
                mark(row, 'custrecord_fs_rejected');
            }
        });
    };

    const summarize = (summary) => {
        summary.reduceSummary.errors.iterator().each((key, error) => {
            log.error({ title: `fieldsync batch ${key} failed`, details: error });
            return true;
        });
    };

    return { getInputData, map, reduce, summarize };
});

/**
 * Records every inventory item change in fieldsync's outbox custom record, for
 * fieldsync_outbox_mr.js to deliver. Changes that fieldsync itself made through REST web
 * services, as the integration role, are skipped so they do not come back as new changes.
 *
 * Script parameter:
 * - custscript_fieldsync_integration_role: internal id of the role fieldsync's OAuth 2.0
 *   token acts as.
 *
 * @NApiVersion 2.1
 * @NScriptType UserEventScript
 * @NModuleScope SameAccount
 */
define(['N/record', 'N/runtime', 'N/log'], (record, runtime, log) => {
    const OUTBOX = 'customrecord_fieldsync_outbox';
    const BASE_PRICE_LEVEL = '1';
    const SENT_TYPES = ['create', 'edit', 'xedit', 'delete'];

    /** Tells whether the change came from fieldsync's own REST write. */
    const isOwnWrite = () => {
        const role = String(
            runtime.getCurrentScript().getParameter({ name: 'custscript_fieldsync_integration_role' }) || ''
        );
        return (
            role !== '' &&
            runtime.executionContext === runtime.ContextType.REST_WEBSERVICES &&
            String(runtime.getCurrentUser().role) === role
        );
    };

    /** Reads the content of a <meta name="description"> element, as fieldsync writes it. */
    const metaDescription = (html) => {
        const match = /<meta name="description" content="([^"]*)">/.exec(html || '');
        if (!match) {
            return undefined;
        }
        return match[1]
            .replace(/&quot;/g, '"')
            .replace(/&lt;/g, '<')
            .replace(/&gt;/g, '>')
            .replace(/&amp;/g, '&');
    };

    /**
     * Reads the Base Price row of the pricing sublist.
     * NOTE: the sublist id `price` and the column `price_1_` (first quantity level) hold for an
     * account without Multiple Currencies; with it the sublist is `price<currency id>`.
     */
    const basePrice = (item) => {
        const line = item.findSublistLineWithValue({ sublistId: 'price', fieldId: 'pricelevel', value: BASE_PRICE_LEVEL });
        if (line < 0) {
            return undefined;
        }
        const price = item.getSublistValue({ sublistId: 'price', fieldId: 'price_1_', line });
        return price === '' || price === null ? undefined : price;
    };

    /** Collects the synced values, leaving out empty ones except the quantity: NetSuite shows
     *  no quantity available when none is, so an empty one is sent as 0. */
    const itemFields = (item) => {
        const fields = {
            itemid: item.getValue('itemid'),
            displayname: item.getValue('displayname') || undefined,
            baseprice: basePrice(item),
            // NOTE: with Multi-Location Inventory the quantity is per location, in the
            // `locations` sublist, and this body field is the sum NetSuite shows.
            quantityavailable: Number(item.getValue('quantityavailable') || 0),
            pagetitle: item.getValue('pagetitle') || undefined,
            metadescription: metaDescription(item.getValue('metataghtml')),
        };
        return JSON.parse(JSON.stringify(fields));
    };

    const afterSubmit = (context) => {
        if (!SENT_TYPES.includes(context.type) || isOwnWrite()) {
            return;
        }
        const deleted = context.type === context.UserEventType.DELETE;
        const submitted = deleted ? context.oldRecord : context.newRecord;
        // An inline edit (xedit) carries only the edited fields, so the whole item is loaded.
        const item =
            context.type === context.UserEventType.XEDIT
                ? record.load({ type: submitted.type, id: submitted.id })
                : submitted;

        const event = {
            recordType: String(submitted.type),
            id: String(submitted.id),
            externalId: item.getValue('externalid') || undefined,
            type: String(context.type),
            occurredAt: new Date().toISOString(),
            fields: itemFields(item),
        };
        const outbox = record.create({ type: OUTBOX });
        outbox.setValue({ fieldId: 'custrecord_fs_event', value: JSON.stringify(event) });
        outbox.setValue({ fieldId: 'custrecord_fs_delivered', value: false });
        outbox.setValue({ fieldId: 'custrecord_fs_rejected', value: false });
        const rowId = outbox.save();
        log.debug({ title: 'fieldsync outbox', details: `row ${rowId}: ${event.type} of item ${event.id}` });
    };

    return { afterSubmit };
});

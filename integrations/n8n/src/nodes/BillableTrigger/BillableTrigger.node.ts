import {
	NodeApiError,
	NodeConnectionTypes,
	type IDataObject,
	type IHookFunctions,
	type INodeType,
	type INodeTypeDescription,
	type IWebhookFunctions,
	type IWebhookResponseData,
	type JsonObject,
} from 'n8n-workflow';

import { problemMessage } from '../../shared/problem';
import { verifyStandardWebhook } from '../../shared/signature';
import { billableRequest, CREDENTIAL } from '../../shared/transport';

/** The event types Billable sends (billing_platform/webhooks/events.py). */
export const EVENT_TYPES = [
	'adjustment.created',
	'allowance.reset',
	'batch.expired',
	'batch.revoked',
	'customer.created',
	'customer.merged',
	'grant.created',
	'hold.committed',
	'hold.created',
	'hold.released',
	'order.cancelled',
	'order.confirmed',
	'order.created',
	'order.refunded',
	'product.deactivated',
	'quota.consumed',
	'quota.depleted',
	'quota.low',
	'quota.threshold_reached',
	'referral.attached',
	'referral.rewarded',
	'subscription.cancelled',
	'subscription.created',
	'subscription.expired',
	'subscription.past_due',
	'subscription.paused',
	'subscription.plan_changed',
	'subscription.renewal_due',
	'subscription.renewed',
	'subscription.resumed',
	'trial.activated',
	'webhook.test',
];

/** What the node keeps in the workflow's static data between activation and deactivation. */
interface Registration extends IDataObject {
	endpointId?: string;
	secret?: string;
	url?: string;
}

/**
 * The registration of the active workflow (`live`) or of the editor's "Listen for test event"
 * (`test`, at the test URL, removed when listening stops): apart, so listening for a test event
 * on an active workflow leaves its endpoint alone.
 */
function registration(ctx: IHookFunctions | IWebhookFunctions): Registration {
	const data = ctx.getWorkflowStaticData('node');
	const slot = ctx.getMode() === 'manual' ? 'test' : 'live';
	if (!data[slot] || typeof data[slot] !== 'object') data[slot] = {};
	return data[slot] as Registration;
}

function chosenTypes(ctx: IHookFunctions): string[] {
	const types = (ctx.getNodeParameter('events', []) as string[]).filter((t) => t !== '*');
	return [...new Set(types)].sort();
}

function sameTypes(a: unknown, b: string[]): boolean {
	if (!Array.isArray(a)) return false;
	const left = [...a].map(String).sort();
	return left.length === b.length && left.every((t, i) => t === b[i]);
}

export class BillableTrigger implements INodeType {
	description: INodeTypeDescription = {
		displayName: 'Billable Trigger',
		name: 'billableTrigger',
		icon: 'file:billable.svg',
		group: ['trigger'],
		version: 1,
		subtitle: '={{ ($parameter["events"] || []).join(", ") }}',
		description:
			'Starts the workflow on Billable events: registers its own webhook endpoint and checks every signature',
		defaults: { name: 'Billable Trigger' },
		inputs: [],
		outputs: [NodeConnectionTypes.Main],
		credentials: [{ name: CREDENTIAL, required: true }],
		webhooks: [
			{
				name: 'default',
				httpMethod: 'POST',
				// Answer when the workflow has finished: a failed run answers 500 and Billable delivers the
				// event again later; "When Received" answers 200 at once.
				responseMode: '={{ $parameter["responseMode"] }}',
				responseData: 'noData',
				path: 'webhook',
			},
		],
		properties: [
			{
				displayName: 'Events',
				name: 'events',
				type: 'multiOptions',
				required: true,
				default: [],
				options: [
					{ name: '* (Every Event)', value: '*' },
					...EVENT_TYPES.map((type) => ({ name: type, value: type })),
				],
				description:
					'The event types the endpoint receives. "* (Every Event)" alone subscribes to every type, those added later included.',
			},
			{
				displayName: 'Respond',
				name: 'responseMode',
				type: 'options',
				options: [
					{
						name: 'When Last Node Finishes',
						value: 'lastNode',
						description: 'A run that fails answers 500, and Billable retries the delivery',
					},
					{
						name: 'When Received',
						value: 'onReceived',
						description: 'Answer 200 at once; a run that fails is not retried',
					},
				],
				default: 'lastNode',
			},
			{
				displayName: 'Include Test Events',
				name: 'includeTestEvents',
				type: 'boolean',
				default: false,
				description:
					'Whether webhook.test events (sent by POST /webhooks/endpoints/{id}/test) start the workflow; when off they are verified and answered 200 without a run',
			},
			{
				displayName: 'Description',
				name: 'endpointDescription',
				type: 'string',
				default: '',
				placeholder: 'n8n: top-up offers',
				description: 'Shown in the list of webhook endpoints; by default "n8n: <workflow name>"',
			},
		],
	};

	webhookMethods = {
		default: {
			async checkExists(this: IHookFunctions): Promise<boolean> {
				const data = registration(this);
				const url = this.getNodeWebhookUrl('default');
				if (!data.endpointId || !data.secret) return false;
				const answer = await billableRequest.call(
					this, 'GET', `/webhooks/endpoints/${encodeURIComponent(data.endpointId)}`,
				);
				if (!answer.ok) {
					if (answer.status === 404) {
						delete data.endpointId;
						delete data.secret;
						delete data.url;
						return false;
					}
					throw new NodeApiError(this.getNode(), answer.problem as unknown as JsonObject, {
						message: problemMessage(answer.problem),
						description: answer.problem.detail || undefined,
						httpCode: String(answer.status),
					});
				}
				const endpoint = answer.body as IDataObject;
				if (endpoint.url !== url || !sameTypes(endpoint.event_types, chosenTypes(this))) {
					// The workflow changed (its URL or the events): replace the endpoint.
					await billableRequest.call(
						this, 'DELETE', `/webhooks/endpoints/${encodeURIComponent(data.endpointId)}`,
					);
					delete data.endpointId;
					delete data.secret;
					delete data.url;
					return false;
				}
				if (endpoint.is_active === false) {
					// Billable disabled it after failures; activating the workflow turns it back on.
					await billableRequest.call(
						this, 'PATCH', `/webhooks/endpoints/${encodeURIComponent(data.endpointId)}`,
						{ body: { is_active: true } },
					);
				}
				return true;
			},

			async create(this: IHookFunctions): Promise<boolean> {
				const url = this.getNodeWebhookUrl('default') as string;
				const description =
					(this.getNodeParameter('endpointDescription', '') as string).trim() ||
					`n8n: ${this.getWorkflow().name ?? 'workflow'}`.slice(0, 500);
				const answer = await billableRequest.call(this, 'POST', '/webhooks/endpoints', {
					body: { url, event_types: chosenTypes(this), description },
				});
				if (!answer.ok) {
					throw new NodeApiError(this.getNode(), answer.problem as unknown as JsonObject, {
						message: problemMessage(answer.problem),
						description: answer.problem.detail || undefined,
						httpCode: String(answer.status),
					});
				}
				const endpoint = answer.body as IDataObject;
				const data = registration(this);
				data.endpointId = String(endpoint.id);
				data.secret = String(endpoint.secret);
				data.url = url;
				return true;
			},

			async delete(this: IHookFunctions): Promise<boolean> {
				const data = registration(this);
				if (data.endpointId) {
					const answer = await billableRequest.call(
						this, 'DELETE', `/webhooks/endpoints/${encodeURIComponent(data.endpointId)}`,
					);
					// 404: removed already (by hand, or with the tenant); nothing left to do.
					if (!answer.ok && answer.status !== 404) return false;
				}
				delete data.endpointId;
				delete data.secret;
				delete data.url;
				return true;
			},
		},
	};

	async webhook(this: IWebhookFunctions): Promise<IWebhookResponseData> {
		const req = this.getRequestObject() as unknown as {
			rawBody?: Buffer;
			readRawBody?: () => Promise<void>;
			headers: Record<string, unknown>;
		};
		const res = this.getResponseObject();
		if (!req.rawBody && req.readRawBody) await req.readRawBody();
		const raw = req.rawBody ?? Buffer.from('');
		const data = registration(this);
		const verdict = verifyStandardWebhook(data.secret ?? '', req.headers, raw);
		if (!verdict.ok) {
			// Not from Billable, or signed with a secret this workflow does not hold: no run, and a
			// 401 that Billable records as a failed attempt.
			res.status(401).json({ code: 'invalid_signature', detail: verdict.reason });
			return { noWebhookResponse: true };
		}
		let event: IDataObject;
		try {
			event = JSON.parse(raw.toString('utf8')) as IDataObject;
		} catch {
			res.status(400).json({ code: 'malformed_json', detail: 'the body is not JSON' });
			return { noWebhookResponse: true };
		}
		if (event.type === 'webhook.test' && !this.getNodeParameter('includeTestEvents', false)) {
			return { webhookResponse: { received: true, test: true } };
		}
		// The event as sent (parsed from the verified bytes), plus the delivery's id and time.
		// `id` is the `webhook-id`, the same on every retry and redelivery of the event.
		return {
			workflowData: [
				this.helpers.returnJsonArray([
					{ ...event, webhook: { id: verdict.id, timestamp: verdict.timestamp } },
				]),
			],
		};
	}
}

import {
	NodeApiError,
	NodeConnectionTypes,
	NodeOperationError,
	type IDataObject,
	type IExecuteFunctions,
	type INodeExecutionData,
	type INodeType,
	type INodeTypeDescription,
	type JsonObject,
} from 'n8n-workflow';

import { defaultIdempotencyKey } from '../../shared/idempotency';
import { problemMessage } from '../../shared/problem';
import { billableRequest, CREDENTIAL } from '../../shared/transport';
import { properties } from './description';
import { OPERATIONS } from './operations';

const TRIGGER_TYPE_SUFFIX = '.billableTrigger';

/**
 * What a run of the workflow is, for default Idempotency-Keys: the id of the Billable event that
 * started it (a parent Billable Trigger; the same on every redelivery), else the execution id.
 */
function runBase(ctx: IExecuteFunctions, itemIndex: number): string {
	let trigger: string | undefined;
	try {
		trigger = ctx
			.getParentNodes(ctx.getNode().name)
			.find((node) => node.type.endsWith(TRIGGER_TYPE_SUFFIX))?.name;
	} catch {
		trigger = undefined;
	}
	if (trigger) {
		const ref = JSON.stringify(trigger);
		for (const expression of [`{{ $(${ref}).item.json.id }}`, `{{ $(${ref}).first().json.id }}`]) {
			try {
				const id = ctx.evaluateExpression(expression, itemIndex);
				if (typeof id === 'string' && id) return id;
			} catch {
				// no paired item: try the next form
			}
		}
	}
	return `exec-${ctx.getExecutionId() ?? 'manual'}`;
}

export class Billable implements INodeType {
	description: INodeTypeDescription = {
		displayName: 'Billable',
		name: 'billable',
		icon: 'file:billable.svg',
		group: ['transform'],
		version: 1,
		subtitle: '={{ $parameter["resource"] + ": " + $parameter["operation"] }}',
		description:
			'Check balances, consume quota, hold, grant, take orders, record referrals, identify customers and manage subscriptions in Billable',
		defaults: { name: 'Billable' },
		inputs: [NodeConnectionTypes.Main],
		outputs: [NodeConnectionTypes.Main],
		usableAsTool: true,
		credentials: [{ name: CREDENTIAL, required: true }],
		properties,
	};

	async execute(this: IExecuteFunctions): Promise<INodeExecutionData[][]> {
		const items = this.getInputData();
		const out: INodeExecutionData[] = [];
		for (let i = 0; i < items.length; i++) {
			const resource = this.getNodeParameter('resource', i) as string;
			const operation = this.getNodeParameter('operation', i) as string;
			const id = `${resource}.${operation}`;
			const op = OPERATIONS[id];
			try {
				if (!op) throw new NodeOperationError(this.getNode(), `Unknown operation ${id}`, { itemIndex: i });
				let call;
				try {
					call = op.build((name) => this.getNodeParameter(name, i, undefined));
				} catch (error) {
					throw new NodeOperationError(this.getNode(), (error as Error).message, { itemIndex: i });
				}
				let idempotencyKey: string | undefined;
				if (op.write) {
					idempotencyKey = String(this.getNodeParameter('idempotencyKey', i, '') ?? '').trim();
					if (!idempotencyKey) {
						idempotencyKey = defaultIdempotencyKey(
							runBase(this, i), id, i, call.method, call.path, call.body ?? {},
						);
					}
				}
				const answer = await billableRequest.call(this, call.method, call.path, {
					qs: call.qs,
					body: call.body,
					idempotencyKey,
				});
				if (answer.ok) {
					const body = answer.body;
					const json: IDataObject =
						body && typeof body === 'object' && !Array.isArray(body)
							? (body as IDataObject)
							: { data: body as IDataObject[] };
					out.push({ json, pairedItem: { item: i } });
					continue;
				}
				const problem = answer.problem;
				if (this.continueOnFail()) {
					// The problem as data: an IF or Switch node branches on `code` (insufficient_quota…).
					out.push({ json: problem, pairedItem: { item: i } });
					continue;
				}
				throw new NodeApiError(this.getNode(), problem as unknown as JsonObject, {
					message: problemMessage(problem),
					description: problem.detail || undefined,
					httpCode: String(problem.status),
					itemIndex: i,
				});
			} catch (error) {
				if (error instanceof NodeApiError) throw error;
				if (this.continueOnFail()) {
					const code = error instanceof NodeOperationError ? 'invalid_parameter' : 'request_failed';
					out.push({ json: { error: (error as Error).message, code }, pairedItem: { item: i } });
					continue;
				}
				if (error instanceof NodeOperationError) throw error;
				// The request did not get an answer (refused, timed out, DNS).
				throw new NodeApiError(this.getNode(), error as JsonObject, { itemIndex: i });
			}
		}
		return [out];
	}
}

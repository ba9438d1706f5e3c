import type { IDataObject, IHttpRequestMethods } from 'n8n-workflow';

/**
 * What one operation sends: its method and path, query or body built from the node's fields.
 * `get(name)` reads a field of the current item; fields an operation does not show are never read.
 */
export interface Call {
	method: IHttpRequestMethods;
	path: string;
	qs?: IDataObject;
	body?: IDataObject;
}

export type Get = (name: string) => unknown;

export interface Operation {
	/** `resource.operation`, also part of the default Idempotency-Key. */
	id: string;
	/** A write: sends an Idempotency-Key. */
	write: boolean;
	build: (get: Get) => Call;
}

function seg(value: unknown): string {
	const text = String(value ?? '').trim();
	if (!text) throw new Error('an id field is empty');
	return encodeURIComponent(text);
}

/** A JSON field (metadata, profile): an object, or text that parses to one. */
export function jsonObject(value: unknown, field: string): IDataObject {
	if (value === undefined || value === null || value === '') return {};
	let parsed = value;
	if (typeof value === 'string') {
		try {
			parsed = JSON.parse(value);
		} catch {
			throw new Error(`${field} is not valid JSON`);
		}
	}
	if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
		throw new Error(`${field} must be a JSON object`);
	}
	return parsed as IDataObject;
}

/** The customer reference: `customer_id`, or `provider` + `external_id`. */
export function customerRef(get: Get, prefix = ''): IDataObject {
	const by = get(`${prefix}customerBy`);
	if (by === 'id') return { customer_id: String(get(`${prefix}customerId`) ?? '').trim() };
	const provider = String(get(`${prefix}provider`) ?? '').trim() || 'default';
	return { provider, external_id: String(get(`${prefix}externalId`) ?? '').trim() };
}

function optional(body: IDataObject, name: string, value: unknown): void {
	if (value === undefined || value === null || value === '') return;
	body[name] = value;
}

function customerQuery(get: Get): IDataObject {
	return customerRef(get);
}

const ops: Operation[] = [
	// --- balance and entitlements
	{
		id: 'balance.check',
		write: false,
		build: (get) => {
			const qs = customerQuery(get);
			optional(qs, 'feature', String(get('feature') ?? '').trim());
			if (get('explain')) qs.explain = true;
			return { method: 'GET', path: '/billing/balance', qs };
		},
	},
	{
		id: 'balance.entitlements',
		write: false,
		build: (get) => {
			const qs = customerQuery(get);
			if (get('explain')) qs.explain = true;
			return { method: 'GET', path: '/billing/entitlements', qs };
		},
	},
	{
		id: 'balance.wallet',
		write: false,
		build: (get) => ({ method: 'GET', path: '/billing/wallet', qs: customerQuery(get) }),
	},
	// --- quota
	{
		id: 'quota.consume',
		write: true,
		build: (get) => {
			const body: IDataObject = {
				...customerRef(get),
				feature: String(get('feature') ?? '').trim(),
				amount: Number(get('amount') ?? 1),
				metadata: jsonObject(get('metadata'), 'Metadata'),
			};
			optional(body, 'action_id', String(get('actionId') ?? ''));
			optional(body, 'action_type', String(get('actionType') ?? '').trim());
			return { method: 'POST', path: '/billing/quota/consume', body };
		},
	},
	// --- holds
	{
		id: 'hold.create',
		write: true,
		build: (get) => ({
			method: 'POST',
			path: '/billing/holds',
			body: {
				...customerRef(get),
				feature: String(get('feature') ?? '').trim(),
				amount: Number(get('amount') ?? 1),
				ttl_seconds: Number(get('ttlSeconds') ?? 900),
				metadata: jsonObject(get('metadata'), 'Metadata'),
			},
		}),
	},
	{
		id: 'hold.commit',
		write: true,
		build: (get) => {
			const body: IDataObject = {};
			const amount = get('commitAmount');
			if (amount !== undefined && amount !== null && amount !== '' && Number(amount) >= 0) {
				body.amount = Number(amount);
			}
			return { method: 'POST', path: `/billing/holds/${seg(get('holdId'))}/commit`, body };
		},
	},
	{
		id: 'hold.release',
		write: true,
		build: (get) => ({
			method: 'POST',
			path: `/billing/holds/${seg(get('holdId'))}/release`,
			body: {},
		}),
	},
	// --- grants
	{
		id: 'grant.create',
		write: true,
		build: (get) => {
			const body: IDataObject = {
				...customerRef(get),
				sku: String(get('sku') ?? '').trim(),
				kind: String(get('kind') ?? 'bonus'),
				metadata: jsonObject(get('metadata'), 'Metadata'),
			};
			optional(body, 'reason', String(get('reason') ?? ''));
			optional(body, 'expires_at', String(get('expiresAt') ?? '').trim());
			return { method: 'POST', path: '/billing/grants', body };
		},
	},
	// --- orders
	{
		id: 'order.create',
		write: true,
		build: (get) => {
			const lines = (get('items') as IDataObject | undefined)?.item as IDataObject[] | undefined;
			const items = (lines ?? []).map((line) => ({
				sku: String(line.sku ?? '').trim(),
				quantity: Number(line.quantity ?? 1),
			}));
			if (!items.length) throw new Error('an order needs at least one item');
			return {
				method: 'POST',
				path: '/billing/orders',
				body: { ...customerRef(get), items, metadata: jsonObject(get('metadata'), 'Metadata') },
			};
		},
	},
	{
		id: 'order.confirm',
		write: true,
		build: (get) => {
			const body: IDataObject = {};
			optional(body, 'payment_id', String(get('paymentId') ?? '').trim());
			optional(body, 'payment_method', String(get('paymentMethod') ?? '').trim());
			return { method: 'POST', path: `/billing/orders/${seg(get('orderId'))}/confirm`, body };
		},
	},
	{
		id: 'order.cancel',
		write: true,
		build: (get) => ({
			method: 'POST',
			path: `/billing/orders/${seg(get('orderId'))}/cancel`,
			body: { reason: String(get('reason') ?? '') },
		}),
	},
	{
		id: 'order.refund',
		write: true,
		build: (get) => ({
			method: 'POST',
			path: `/billing/orders/${seg(get('orderId'))}/refund`,
			body: { reason: String(get('reason') ?? '') },
		}),
	},
	{
		id: 'order.get',
		write: false,
		build: (get) => ({ method: 'GET', path: `/billing/orders/${seg(get('orderId'))}` }),
	},
	// --- referrals
	{
		id: 'referral.create',
		write: true,
		build: (get) => ({
			method: 'POST',
			path: '/billing/referrals',
			body: {
				referrer: customerRef(get, 'referrer_'),
				referee: customerRef(get),
				metadata: jsonObject(get('metadata'), 'Metadata'),
			},
		}),
	},
	{
		id: 'referral.stats',
		write: false,
		build: (get) => ({ method: 'GET', path: '/billing/referrals/stats', qs: customerQuery(get) }),
	},
	// --- customers
	{
		id: 'customer.identify',
		write: true,
		build: (get) => ({
			method: 'POST',
			path: '/billing/identify',
			body: {
				provider: String(get('provider') ?? '').trim() || 'default',
				external_id: String(get('externalId') ?? '').trim(),
				profile: jsonObject(get('profile'), 'Profile'),
			},
		}),
	},
	{
		id: 'customer.merge',
		write: true,
		build: (get) => ({
			method: 'POST',
			path: '/billing/customers/merge',
			body: {
				target_customer_id: String(get('targetCustomerId') ?? '').trim(),
				source_customer_id: String(get('sourceCustomerId') ?? '').trim(),
			},
		}),
	},
	{
		id: 'customer.get',
		write: false,
		build: (get) => ({ method: 'GET', path: `/billing/customers/${seg(get('customerId'))}` }),
	},
	{
		id: 'customer.find',
		write: false,
		build: (get) => ({
			method: 'GET',
			path: '/billing/customers',
			qs: {
				provider: String(get('provider') ?? '').trim() || 'default',
				external_id: String(get('externalId') ?? '').trim(),
			},
		}),
	},
	// --- plans
	{
		id: 'plan.list',
		write: false,
		build: () => ({ method: 'GET', path: '/billing/plans', qs: { limit: 200 } }),
	},
	{
		id: 'plan.get',
		write: false,
		build: (get) => ({ method: 'GET', path: `/billing/plans/${seg(get('planKey'))}` }),
	},
	// --- subscriptions
	{
		id: 'subscription.create',
		write: true,
		build: (get) => {
			const body: IDataObject = {
				...customerRef(get),
				plan: String(get('planKey') ?? '').trim(),
				trial: Boolean(get('trial') ?? true),
				metadata: jsonObject(get('metadata'), 'Metadata'),
			};
			const version = Number(get('version') ?? 0);
			if (version > 0) body.version = version;
			return { method: 'POST', path: '/billing/subscriptions', body };
		},
	},
	{
		id: 'subscription.get',
		write: false,
		build: (get) => ({
			method: 'GET',
			path: `/billing/subscriptions/${seg(get('subscriptionId'))}`,
		}),
	},
	{
		id: 'subscription.list',
		write: false,
		build: (get) => ({
			method: 'GET',
			path: '/billing/subscriptions',
			qs: { ...customerQuery(get), limit: 200 },
		}),
	},
	{
		id: 'subscription.change',
		write: true,
		build: (get) => {
			const body: IDataObject = { plan: String(get('planKey') ?? '').trim() };
			const version = Number(get('version') ?? 0);
			if (version > 0) body.version = version;
			const at = String(get('at') ?? 'default');
			if (at !== 'default') body.at = at;
			return {
				method: 'POST',
				path: `/billing/subscriptions/${seg(get('subscriptionId'))}/change`,
				body,
			};
		},
	},
	...(['cancel', 'resume', 'pause', 'unpause', 'renewal-order'] as const).map(
		(action): Operation => ({
			id: `subscription.${action === 'renewal-order' ? 'renewalOrder' : action}`,
			write: true,
			build: (get) => ({
				method: 'POST',
				path: `/billing/subscriptions/${seg(get('subscriptionId'))}/${action}`,
				body: {},
			}),
		}),
	),
];

export const OPERATIONS: Record<string, Operation> = Object.fromEntries(ops.map((o) => [o.id, o]));

import type { INodeProperties, INodePropertyOptions } from 'n8n-workflow';

type Shown = Record<string, string[]>;

/** Shown for these `resource.operation` ids only: one marker, expanded by `expand` below. */
function on(...ids: string[]): { show: Shown } {
	return { show: { __ids: ids } };
}

/**
 * One copy of each property per resource it is shown for, each naming that resource's operations:
 * a single `{resource: [...], operation: [...]}` would also show it for every other pairing
 * (`hold` with `consume`, `referral` with `create`).
 */
function expand(list: INodeProperties[]): INodeProperties[] {
	return list.flatMap((prop) => {
		const show = prop.displayOptions?.show as Shown | undefined;
		const ids = show?.__ids;
		if (!show || !ids) return [prop];
		const rest = Object.fromEntries(Object.entries(show).filter(([k]) => k !== '__ids'));
		const byResource = new Map<string, string[]>();
		for (const id of ids) {
			const [resource, operation] = id.split('.');
			byResource.set(resource, [...(byResource.get(resource) ?? []), operation]);
		}
		return [...byResource].map(([resource, operations]) => ({
			...prop,
			displayOptions: { show: { resource: [resource], operation: operations, ...rest } },
		}));
	});
}

function ops(resource: string, options: Array<[string, string, string]>): INodeProperties {
	return {
		displayName: 'Operation',
		name: 'operation',
		type: 'options',
		noDataExpression: true,
		displayOptions: { show: { resource: [resource] } },
		options: options.map(
			([value, name, action]): INodePropertyOptions => ({ value, name, action, description: action }),
		),
		default: options[0][0],
	};
}

/** The customer fields: by identity (provider + external id) or by Billable customer id. */
function customerFields(ids: string[], prefix = '', label = 'Customer'): INodeProperties[] {
	const shown = on(...ids);
	const by = `${prefix}customerBy`;
	return [
		{
			displayName: `${label} By`,
			name: by,
			type: 'options',
			options: [
				{ name: 'Identity (Provider + External ID)', value: 'identity' },
				{ name: 'Customer ID', value: 'id' },
			],
			default: 'identity',
			displayOptions: shown,
			description: `How the ${label.toLowerCase()} is named. An identity Billable has never seen is created by writes.`,
		},
		{
			displayName: `${label} Provider`,
			name: `${prefix}provider`,
			type: 'string',
			default: 'default',
			placeholder: 'telegram',
			displayOptions: { show: { ...shown.show, [by]: ['identity'] } },
			description: 'Where the external ID comes from, e.g. telegram, stripe, email',
		},
		{
			displayName: `${label} External ID`,
			name: `${prefix}externalId`,
			type: 'string',
			default: '',
			required: true,
			placeholder: '={{ $json.user_id }}',
			displayOptions: { show: { ...shown.show, [by]: ['identity'] } },
			description: 'The ID of the user in that provider',
		},
		{
			displayName: `${label} ID`,
			name: `${prefix}customerId`,
			type: 'string',
			default: '',
			required: true,
			displayOptions: { show: { ...shown.show, [by]: ['id'] } },
			description: 'The Billable customer ID (a UUID)',
		},
	];
}

const CUSTOMER_OPS = [
	'balance.check',
	'balance.entitlements',
	'balance.wallet',
	'quota.consume',
	'hold.create',
	'grant.create',
	'order.create',
	'referral.stats',
	'subscription.create',
	'subscription.list',
];

export const WRITE_OPS = [
	'quota.consume',
	'hold.create',
	'hold.commit',
	'hold.release',
	'grant.create',
	'order.create',
	'order.confirm',
	'order.cancel',
	'order.refund',
	'referral.create',
	'customer.identify',
	'customer.merge',
	'subscription.create',
	'subscription.change',
	'subscription.cancel',
	'subscription.resume',
	'subscription.pause',
	'subscription.unpause',
	'subscription.renewalOrder',
];

const metadata = (ids: string[]): INodeProperties => ({
	displayName: 'Metadata',
	name: 'metadata',
	type: 'json',
	default: '{}',
	displayOptions: on(...ids),
	description: 'A JSON object stored with the record (at most 16 KiB)',
});

export const properties: INodeProperties[] = expand([
	{
		displayName: 'Resource',
		name: 'resource',
		type: 'options',
		noDataExpression: true,
		options: [
			{ name: 'Balance', value: 'balance' },
			{ name: 'Customer', value: 'customer' },
			{ name: 'Grant', value: 'grant' },
			{ name: 'Hold', value: 'hold' },
			{ name: 'Order', value: 'order' },
			{ name: 'Plan', value: 'plan' },
			{ name: 'Quota', value: 'quota' },
			{ name: 'Referral', value: 'referral' },
			{ name: 'Subscription', value: 'subscription' },
		],
		default: 'quota',
	},
	ops('balance', [
		['check', 'Check', 'Check whether a customer can use a feature, and how much is left'],
		['entitlements', 'Get Entitlements', 'Get every feature, value and subscription of a customer'],
		['wallet', 'Get Wallet', 'Get the units a customer holds per product'],
	]),
	ops('quota', [['consume', 'Consume', 'Spend units of a feature (402 when there are too few)']]),
	ops('hold', [
		['create', 'Create', 'Reserve units of a feature before long work'],
		['commit', 'Commit', 'Spend a hold (all of it or less)'],
		['release', 'Release', 'Give a hold back without spending'],
	]),
	ops('grant', [['create', 'Create', 'Grant an offer: a bonus, a trial, a referral reward or a manual grant']]),
	ops('order', [
		['create', 'Create', 'Create a pending order of offers'],
		['confirm', 'Confirm', 'Mark an order paid and grant what it holds'],
		['cancel', 'Cancel', 'Cancel a pending order'],
		['refund', 'Refund', 'Refund a paid order and take back what it granted'],
		['get', 'Get', 'Get an order'],
	]),
	ops('referral', [
		['create', 'Create', 'Record who referred a customer'],
		['stats', 'Get Stats', 'Count the customers a customer referred, and the rewarded ones'],
	]),
	ops('customer', [
		['identify', 'Identify', 'Find or create the customer of an identity, and tell whether a trial is possible'],
		['find', 'Find by Identity', 'Find the customer of an identity'],
		['get', 'Get', 'Get a customer by ID'],
		['merge', 'Merge', 'Merge one customer into another'],
	]),
	ops('plan', [
		['list', 'List', 'List the plans'],
		['get', 'Get', 'Get a plan with its current terms'],
	]),
	ops('subscription', [
		['create', 'Create', 'Subscribe a customer to a plan'],
		['get', 'Get', 'Get a subscription'],
		['list', 'List', "List a customer's subscriptions"],
		['change', 'Change Plan', 'Move a subscription to another plan or version'],
		['cancel', 'Cancel', 'Cancel at the end of the period'],
		['resume', 'Resume', 'Undo a cancellation at period end'],
		['pause', 'Pause', 'Freeze a subscription'],
		['unpause', 'Unpause', 'Resume a paused subscription'],
		['renewalOrder', 'Get Renewal Order', 'Get or create the pending order that pays for the next period'],
	]),

	...customerFields(CUSTOMER_OPS),
	...customerFields(['referral.create'], 'referrer_', 'Referrer'),
	...customerFields(['referral.create'], '', 'Referee'),

	// customer.identify and customer.find name an identity only
	{
		displayName: 'Provider',
		name: 'provider',
		type: 'string',
		default: 'default',
		placeholder: 'telegram',
		displayOptions: on('customer.identify', 'customer.find'),
		description: 'Where the external ID comes from, e.g. telegram, stripe, email',
	},
	{
		displayName: 'External ID',
		name: 'externalId',
		type: 'string',
		default: '',
		required: true,
		displayOptions: on('customer.identify', 'customer.find'),
		description: 'The ID of the user in that provider',
	},
	{
		displayName: 'Profile',
		name: 'profile',
		type: 'json',
		default: '{}',
		displayOptions: on('customer.identify'),
		description: "A JSON object merged into the customer's metadata (name, username, language)",
	},
	{
		displayName: 'Customer ID',
		name: 'customerId',
		type: 'string',
		default: '',
		required: true,
		displayOptions: on('customer.get'),
	},
	{
		displayName: 'Target Customer ID',
		name: 'targetCustomerId',
		type: 'string',
		default: '',
		required: true,
		displayOptions: on('customer.merge'),
		description: 'The customer that stays',
	},
	{
		displayName: 'Source Customer ID',
		name: 'sourceCustomerId',
		type: 'string',
		default: '',
		required: true,
		displayOptions: on('customer.merge'),
		description: 'The customer merged into the target (its identities, batches, orders move)',
	},

	// features and amounts
	{
		displayName: 'Feature',
		name: 'feature',
		type: 'string',
		default: '',
		required: true,
		placeholder: 'pdf_analysis',
		displayOptions: on('quota.consume', 'hold.create'),
		description: 'A feature name or a product key',
	},
	{
		displayName: 'Feature',
		name: 'feature',
		type: 'string',
		default: '',
		placeholder: 'pdf_analysis',
		displayOptions: on('balance.check'),
		description: 'A feature name or product key; empty lists every feature the customer holds',
	},
	{
		displayName: 'Explain',
		name: 'explain',
		type: 'boolean',
		default: false,
		displayOptions: on('balance.check', 'balance.entitlements'),
		description: 'Whether to add what makes the balance up and why it cannot be used',
	},
	{
		displayName: 'Amount',
		name: 'amount',
		type: 'number',
		typeOptions: { minValue: 1, numberPrecision: 0 },
		default: 1,
		displayOptions: on('quota.consume', 'hold.create'),
		description: 'Units of the feature',
	},
	{
		displayName: 'Action ID',
		name: 'actionId',
		type: 'string',
		default: '',
		displayOptions: on('quota.consume'),
		description: 'Your ID of the action (a request ID), kept on the usage',
	},
	{
		displayName: 'Action Type',
		name: 'actionType',
		type: 'string',
		default: 'usage',
		displayOptions: on('quota.consume'),
	},
	{
		displayName: 'TTL (Seconds)',
		name: 'ttlSeconds',
		type: 'number',
		typeOptions: { minValue: 60, maxValue: 86400, numberPrecision: 0 },
		default: 900,
		displayOptions: on('hold.create'),
		description: 'After this the hold expires and its units come back',
	},
	{
		displayName: 'Hold ID',
		name: 'holdId',
		type: 'string',
		default: '',
		required: true,
		displayOptions: on('hold.commit', 'hold.release'),
	},
	{
		displayName: 'Amount to Keep',
		name: 'commitAmount',
		type: 'number',
		typeOptions: { minValue: -1, numberPrecision: 0 },
		default: -1,
		displayOptions: on('hold.commit'),
		description: 'Units to spend; -1 spends the whole hold',
	},

	// grants
	{
		displayName: 'Offer SKU',
		name: 'sku',
		type: 'string',
		default: '',
		required: true,
		displayOptions: on('grant.create'),
	},
	{
		displayName: 'Kind',
		name: 'kind',
		type: 'options',
		options: [
			{ name: 'Bonus', value: 'bonus' },
			{ name: 'Trial', value: 'trial', description: 'Once per customer and identity (409 trial_already_used)' },
			{ name: 'Referral', value: 'referral' },
			{ name: 'Manual', value: 'manual' },
		],
		default: 'bonus',
		displayOptions: on('grant.create'),
	},
	{
		displayName: 'Expires At',
		name: 'expiresAt',
		type: 'string',
		default: '',
		placeholder: '2027-01-31T00:00:00Z',
		displayOptions: on('grant.create'),
		description: 'For bonus and manual grants: when the granted units expire (ISO 8601, UTC)',
	},
	{
		displayName: 'Reason',
		name: 'reason',
		type: 'string',
		default: '',
		displayOptions: on('grant.create', 'order.cancel', 'order.refund'),
	},

	// orders
	{
		displayName: 'Items',
		name: 'items',
		type: 'fixedCollection',
		typeOptions: { multipleValues: true },
		default: { item: [{ sku: '', quantity: 1 }] },
		required: true,
		displayOptions: on('order.create'),
		options: [
			{
				name: 'item',
				displayName: 'Item',
				values: [
					{ displayName: 'Offer SKU', name: 'sku', type: 'string', default: '' },
					{
						displayName: 'Quantity',
						name: 'quantity',
						type: 'number',
						typeOptions: { minValue: 1, numberPrecision: 0 },
						default: 1,
					},
				],
			},
		],
	},
	{
		displayName: 'Order ID',
		name: 'orderId',
		type: 'string',
		default: '',
		required: true,
		displayOptions: on('order.confirm', 'order.cancel', 'order.refund', 'order.get'),
	},
	{
		displayName: 'Payment ID',
		name: 'paymentId',
		type: 'string',
		default: '',
		displayOptions: on('order.confirm'),
		description: "The payment provider's ID; another order with the same one is 409 payment_id_conflict",
	},
	{
		displayName: 'Payment Method',
		name: 'paymentMethod',
		type: 'string',
		default: '',
		placeholder: 'card',
		displayOptions: on('order.confirm'),
	},

	// plans and subscriptions
	{
		displayName: 'Plan Key',
		name: 'planKey',
		type: 'string',
		default: '',
		required: true,
		displayOptions: on('plan.get', 'subscription.create', 'subscription.change'),
	},
	{
		displayName: 'Plan Version',
		name: 'version',
		type: 'number',
		typeOptions: { minValue: 0, numberPrecision: 0 },
		default: 0,
		displayOptions: on('subscription.create', 'subscription.change'),
		description: "0 takes the plan's current version",
	},
	{
		displayName: 'Start With Trial',
		name: 'trial',
		type: 'boolean',
		default: true,
		displayOptions: on('subscription.create'),
		description: "Whether to start with the version's trial, if it has one and the customer never had it",
	},
	{
		displayName: 'When',
		name: 'at',
		type: 'options',
		options: [
			{ name: 'Default (Now When Dearer, Else at Period End)', value: 'default' },
			{ name: 'Now', value: 'now' },
			{ name: 'At Period End', value: 'period_end' },
		],
		default: 'default',
		displayOptions: on('subscription.change'),
	},
	{
		displayName: 'Subscription ID',
		name: 'subscriptionId',
		type: 'string',
		default: '',
		required: true,
		displayOptions: on(
			'subscription.get',
			'subscription.change',
			'subscription.cancel',
			'subscription.resume',
			'subscription.pause',
			'subscription.unpause',
			'subscription.renewalOrder',
		),
	},

	metadata(['quota.consume', 'hold.create', 'grant.create', 'order.create', 'referral.create', 'subscription.create']),

	{
		displayName: 'Idempotency Key',
		name: 'idempotencyKey',
		type: 'string',
		default: '',
		displayOptions: on(...WRITE_OPS),
		placeholder: "={{ 'action-' + $json.request_id }}",
		description:
			'Sent as the Idempotency-Key header: the same key and request again replays the first answer and changes nothing. Leave empty for a key derived from the Billable event that started the workflow (or else the execution) and this request.',
	},
]);

import type {
	IAuthenticateGeneric,
	ICredentialTestRequest,
	ICredentialType,
	Icon,
	INodeProperties,
} from 'n8n-workflow';

/** A tenant API key (`bk_…`) and the API base it belongs to. */
export class BillableApi implements ICredentialType {
	name = 'billableApi';

	displayName = 'Billable API';

	icon: Icon = 'file:billable.svg';

	documentationUrl = 'https://github.com/billable/billable/blob/main/docs/n8n.md';

	properties: INodeProperties[] = [
		{
			displayName: 'API Base URL',
			name: 'baseUrl',
			type: 'string',
			default: 'http://127.0.0.1:8000/api/v1',
			placeholder: 'https://billing.example.com/api/v1',
			description: 'The Billable API base, ending in /api/v1 (no trailing slash)',
			required: true,
		},
		{
			displayName: 'API Key',
			name: 'apiKey',
			type: 'string',
			typeOptions: { password: true },
			default: '',
			placeholder: 'bk_…',
			description:
				'A tenant key. The action node needs the scopes billing:read, billing:write and billing:grant; the trigger needs admin (it registers webhook endpoints).',
			required: true,
		},
	];

	authenticate: IAuthenticateGeneric = {
		type: 'generic',
		properties: {
			headers: { 'X-API-Key': '={{$credentials.apiKey}}' },
		},
	};

	// An unknown identity has a balance too (can_use false), so this read answers 200 for every
	// key with billing:read and 401/403 for a wrong, revoked, expired or under-scoped key.
	test: ICredentialTestRequest = {
		request: {
			baseURL: '={{$credentials.baseUrl.replace(/\\/+$/, "")}}',
			url: '/billing/balance',
			method: 'GET',
			qs: { provider: 'n8n', external_id: 'credential-check' },
		},
	};
}

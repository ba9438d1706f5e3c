import type {
	IDataObject,
	IExecuteFunctions,
	IHookFunctions,
	IHttpRequestMethods,
	IHttpRequestOptions,
	ILoadOptionsFunctions,
} from 'n8n-workflow';

import { parseBody, toProblem, type Problem } from './problem';

export const CREDENTIAL = 'billableApi';

type Context = IExecuteFunctions | IHookFunctions | ILoadOptionsFunctions;

export type ApiAnswer =
	| { ok: true; status: number; body: unknown; replayed: boolean }
	| { ok: false; status: number; problem: Problem };

function headerValue(headers: unknown, name: string): string | undefined {
	if (!headers || typeof headers !== 'object') return undefined;
	const value = (headers as Record<string, unknown>)[name];
	return value === undefined || value === null ? undefined : String(value);
}

/**
 * One call to the Billable API with the node's credential. Never throws for an HTTP status:
 * a non-2xx answer comes back as its problem document, for the caller to raise or pass on.
 */
export async function billableRequest(
	this: Context,
	method: IHttpRequestMethods,
	path: string,
	options: { qs?: IDataObject; body?: IDataObject; idempotencyKey?: string; timeout?: number } = {},
): Promise<ApiAnswer> {
	const credentials = await this.getCredentials(CREDENTIAL);
	const base = String(credentials.baseUrl ?? '').replace(/\/+$/, '');
	const headers: IDataObject = { Accept: 'application/json' };
	if (options.idempotencyKey) headers['Idempotency-Key'] = options.idempotencyKey;
	const request: IHttpRequestOptions = {
		method,
		url: `${base}${path}`,
		headers,
		qs: options.qs,
		json: true,
		returnFullResponse: true,
		ignoreHttpStatusErrors: true,
		timeout: options.timeout ?? 30_000,
	};
	if (options.body !== undefined) request.body = options.body;
	const response = (await this.helpers.httpRequestWithAuthentication.call(
		this,
		CREDENTIAL,
		request,
	)) as { statusCode: number; headers: unknown; body: unknown };
	const status = response.statusCode;
	if (status >= 200 && status < 300) {
		return {
			ok: true,
			status,
			body: parseBody(response.body),
			replayed: headerValue(response.headers, 'idempotent-replayed') === 'true',
		};
	}
	return {
		ok: false,
		status,
		problem: toProblem(status, response.body, headerValue(response.headers, 'retry-after')),
	};
}

import type { IDataObject } from 'n8n-workflow';

/**
 * An RFC 9457 problem document as Billable sends it: `code` is stable, `title` and `detail` are
 * for people, and some problems carry more fields (`remaining`, `required_scope`, `errors`).
 */
export interface Problem extends IDataObject {
	type: string;
	title: string;
	status: number;
	detail: string;
	code: string;
}

/** The answer body as an object: JSON is parsed whatever the content type said. */
export function parseBody(body: unknown): unknown {
	if (Buffer.isBuffer(body)) body = body.toString('utf8');
	if (typeof body !== 'string') return body;
	if (body.trim() === '') return {};
	try {
		return JSON.parse(body);
	} catch {
		return body;
	}
}

/**
 * The problem of a non-2xx answer. A body that is not a problem document (a proxy's HTML page,
 * an empty 502) becomes one with code `http_<status>`, so a workflow can always branch on `code`.
 */
export function toProblem(status: number, body: unknown, retryAfter?: string): Problem {
	const parsed = parseBody(body);
	let problem: Problem;
	if (parsed && typeof parsed === 'object' && !Array.isArray(parsed) && 'code' in parsed) {
		const doc = parsed as IDataObject;
		problem = {
			...doc,
			type: String(doc.type ?? 'about:blank'),
			title: String(doc.title ?? `HTTP ${status}`),
			status: typeof doc.status === 'number' ? doc.status : status,
			detail: String(doc.detail ?? ''),
			code: String(doc.code),
		};
	} else {
		const text = typeof parsed === 'string' ? parsed.slice(0, 500) : '';
		problem = {
			type: 'about:blank',
			title: `HTTP ${status}`,
			status,
			detail: text,
			code: `http_${status}`,
		};
	}
	const seconds = retryAfter === undefined ? NaN : Number(retryAfter);
	if (Number.isFinite(seconds)) problem.retry_after = seconds;
	return problem;
}

/** The one-line message of an n8n error for a problem: the code first, so it shows in lists. */
export function problemMessage(problem: Problem): string {
	return `${problem.code}: ${problem.title} (HTTP ${problem.status})`;
}

import { createHash } from 'node:crypto';

/** JSON with object keys sorted at every level: equal data gives equal text. */
export function canonicalJson(value: unknown): string {
	if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
	if (value && typeof value === 'object') {
		const entries = Object.entries(value as Record<string, unknown>)
			.filter(([, v]) => v !== undefined)
			.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
		return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
	}
	return JSON.stringify(value ?? null);
}

/**
 * The Idempotency-Key a write gets when the workflow sets none.
 *
 * `base` is what makes a run of the workflow itself: the Billable event id when the run started
 * from a Billable Trigger (the same on every redelivery of the event), else the execution id (the
 * same on every "Retry On Fail" try). The operation, the item's index and a hash of the request
 * make two different calls of one run two different keys, so Billable never answers
 * `idempotency_key_reused` for them, and the same call retried replays the first answer.
 */
export function defaultIdempotencyKey(
	base: string,
	operation: string,
	itemIndex: number,
	method: string,
	path: string,
	body: unknown,
): string {
	const digest = createHash('sha256')
		.update(`${method} ${path}\n${canonicalJson(body)}`)
		.digest('hex')
		.slice(0, 24);
	const safeBase = base.replace(/[^\x21-\x7e]/g, '').slice(0, 160) || 'run';
	return `n8n:${safeBase}:${operation}:${itemIndex}:${digest}`;
}

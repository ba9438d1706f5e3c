import { createHmac, timingSafeEqual } from 'node:crypto';

/** How far a delivery's `webhook-timestamp` may be from now, as the Standard Webhooks libraries do. */
export const TOLERANCE_SECONDS = 300;

export type Verdict =
	| { ok: true; id: string; timestamp: number }
	| { ok: false; reason: string };

function header(headers: Record<string, unknown>, name: string): string | undefined {
	const value = headers[name] ?? headers[name.toLowerCase()];
	if (Array.isArray(value)) return value.length ? String(value[0]) : undefined;
	return value === undefined || value === null ? undefined : String(value);
}

/**
 * Checks a Standard Webhooks delivery: `v1,<base64 HMAC-SHA256>` of `id.timestamp.body` keyed with
 * the base64 part of the `whsec_` secret, any of the space-separated signatures (two during a
 * secret rotation), over the raw body bytes, with the timestamp within five minutes of `now`.
 */
export function verifyStandardWebhook(
	secret: string,
	headers: Record<string, unknown>,
	rawBody: Buffer | string,
	nowSeconds: number = Date.now() / 1000,
): Verdict {
	const id = header(headers, 'webhook-id');
	const timestamp = header(headers, 'webhook-timestamp');
	const signature = header(headers, 'webhook-signature');
	if (!id || !timestamp || !signature) return { ok: false, reason: 'missing webhook headers' };
	if (!/^\d+$/.test(timestamp)) return { ok: false, reason: 'invalid webhook-timestamp' };
	const ts = Number(timestamp);
	if (nowSeconds - ts > TOLERANCE_SECONDS) return { ok: false, reason: 'timestamp too old' };
	if (ts - nowSeconds > TOLERANCE_SECONDS) return { ok: false, reason: 'timestamp too new' };
	if (!secret) return { ok: false, reason: 'no signing secret' };
	const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
	const body = Buffer.isBuffer(rawBody) ? rawBody : Buffer.from(rawBody, 'utf8');
	const expected = createHmac('sha256', key)
		.update(Buffer.concat([Buffer.from(`${id}.${timestamp}.`, 'utf8'), body]))
		.digest();
	const matches = signature.split(' ').some((entry) => {
		const comma = entry.indexOf(',');
		if (comma < 0 || entry.slice(0, comma) !== 'v1') return false;
		const got = Buffer.from(entry.slice(comma + 1), 'base64');
		return got.length === expected.length && timingSafeEqual(got, expected);
	});
	return matches ? { ok: true, id, timestamp: ts } : { ok: false, reason: 'no matching signature' };
}

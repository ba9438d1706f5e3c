'use strict';
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { toProblem, problemMessage, parseBody } = require('../dist/shared/problem');

test('a problem document keeps its code and extra fields', () => {
	const body = JSON.stringify({
		type: 'https://billable.dev/problems/insufficient_quota', title: 'Not enough units left for this amount',
		status: 402, detail: '5 units were asked for; 2 are left.', code: 'insufficient_quota', remaining: 2,
	});
	const problem = toProblem(402, body);
	assert.equal(problem.code, 'insufficient_quota');
	assert.equal(problem.remaining, 2);
	assert.equal(problem.status, 402);
	assert.equal(problemMessage(problem), 'insufficient_quota: Not enough units left for this amount (HTTP 402)');
});

test('Retry-After becomes retry_after in seconds', () => {
	const problem = toProblem(429, { code: 'rate_limited', title: 'Too many requests', status: 429 }, '7');
	assert.equal(problem.retry_after, 7);
	assert.equal(toProblem(429, { code: 'rate_limited' }, 'soon').retry_after, undefined);
});

test('an answer that is not a problem gets code http_<status>', () => {
	const problem = toProblem(502, '<html>Bad gateway</html>');
	assert.equal(problem.code, 'http_502');
	assert.equal(problem.detail, '<html>Bad gateway</html>');
	assert.equal(toProblem(500, '').code, 'http_500');
	assert.equal(toProblem(404, [1, 2]).code, 'http_404');
});

test('JSON bodies are parsed whatever their type', () => {
	assert.deepEqual(parseBody(Buffer.from('{"a":1}')), { a: 1 });
	assert.deepEqual(parseBody('  '), {});
	assert.equal(parseBody('not json'), 'not json');
});

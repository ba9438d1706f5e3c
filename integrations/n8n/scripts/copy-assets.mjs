// tsc compiles the TypeScript; the nodes' icons (src/**/*.svg) are copied beside the compiled files.
import { cpSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

function copy(dir) {
	for (const name of readdirSync(join(root, 'src', dir))) {
		const rel = join(dir, name);
		if (statSync(join(root, 'src', rel)).isDirectory()) copy(rel);
		else if (name.endsWith('.svg')) cpSync(join(root, 'src', rel), join(root, 'dist', rel));
	}
}

copy('.');

// LDAP text: RFC 4515 escaping of values put into configured filters, filter templates, and a group's name from its DN.

import { createRequire } from 'node:module';

/**
 * ldapts, loaded at its first use (a configured filter checked, a directory asked): only gateways with
 * an LDAP provider need it. Its CommonJS build, loaded synchronously, and the one copy every LDAP file uses.
 */
let ldaptsModule: typeof import('ldapts') | undefined;
export function ldapts(): typeof import('ldapts') {
  return (ldaptsModule ??= createRequire(import.meta.url)('ldapts') as typeof import('ldapts'));
}

/**
 * Escapes a value for an LDAP filter (RFC 4515 section 3): `*`, `(`, `)`, `\` and NUL become `\2a`,
 * `\28`, `\29`, `\5c`, `\00`, so a user name is always matched literally, never read as filter syntax.
 */
export function escapeFilterValue(value: string): string {
  return value.replace(/[*()\\\0]/g, (char) => `\\${char.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

const placeholderPattern = /\{([a-z]+)\}/g;

/** Puts escaped values in for a template's `{name}` placeholders. */
export function fillFilter(template: string, values: Readonly<Record<string, string>>): string {
  return template.replace(placeholderPattern, (whole, name: string) => {
    const value = values[name];
    if (value === undefined) throw new Error(`no value for ${whole} in an LDAP filter`);
    return escapeFilterValue(value);
  });
}

/** Why a filter template is unusable (unknown or missing placeholder, not a filter), or undefined. */
export function filterTemplateProblem(template: string, allowed: readonly string[], required: readonly string[]): string | undefined {
  const used = [...template.matchAll(placeholderPattern)].map((match) => match[1]!);
  const unknown = used.find((name) => !allowed.includes(name));
  if (unknown !== undefined) return `{${unknown}} is no placeholder here; use ${allowed.map((name) => `{${name}}`).join(' or ')}`;
  const missing = required.find((name) => !used.includes(name));
  if (missing !== undefined) return `must contain {${missing}}, e.g. (uid={${missing}})`;
  if (!template.startsWith('(') || !template.endsWith(')') || !balanced(template)) return 'must be an LDAP filter in balanced parentheses, e.g. (uid={user})';
  try {
    ldapts().FilterParser.parseString(fillFilter(template, Object.fromEntries(allowed.map((name) => [name, 'x']))));
  } catch (error) {
    return `is not a valid LDAP filter (${(error as Error).message})`;
  }
  return undefined;
}

/** Parentheses close in order and all of them (values in a template write a literal parenthesis as \28 or \29). */
function balanced(template: string): boolean {
  let depth = 0;
  for (const char of template) {
    depth += char === '(' ? 1 : char === ')' ? -1 : 0;
    if (depth < 0) return false;
  }
  return depth === 0;
}

/**
 * The value of a DN's first RDN, unescaped (RFC 4514): `cn=Registry Admins,ou=groups,...` gives
 * `Registry Admins`. Undefined for a DN it cannot read (no `=`, a `#` hex value).
 */
export function firstRdnValue(dn: string): string | undefined {
  const equals = dn.indexOf('=');
  if (equals <= 0) return undefined;
  let index = equals + 1;
  while (dn[index] === ' ') index++;
  if (dn[index] === '#') return undefined;
  const bytes: number[] = [];
  const pushText = (text: string) => bytes.push(...Buffer.from(text, 'utf8'));
  if (dn[index] === '"') {
    const end = dn.indexOf('"', index + 1);
    if (end === -1) return undefined;
    return dn.slice(index + 1, end);
  }
  for (; index < dn.length; index++) {
    const char = dn[index]!;
    if (char === ',' || char === '+' || char === ';') break;
    if (char !== '\\') {
      // A run of plain text at once, so characters outside the BMP stay whole.
      const run = /^[^,+;\\]+/.exec(dn.slice(index))![0];
      pushText(run);
      index += run.length - 1;
      continue;
    }
    const hex = dn.slice(index + 1, index + 3);
    if (/^[0-9a-fA-F]{2}$/.test(hex)) {
      bytes.push(Number.parseInt(hex, 16));
      index += 2;
    } else if (index + 1 < dn.length) {
      pushText(dn[index + 1]!);
      index += 1;
    } else {
      return undefined;
    }
  }
  const value = Buffer.from(bytes).toString('utf8').trim();
  return value.length > 0 ? value : undefined;
}

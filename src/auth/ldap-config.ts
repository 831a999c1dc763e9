// An LDAP / Active Directory provider's settings from the YAML `providers:` list, checked key by key.

import type { ProviderEntry } from '../config/provider-entry.js';
import { filterTemplateProblem } from './ldap-filter.js';

export interface LdapProviderConfig {
  type: 'ldap';
  name: string;
  /** ldap://HOST[:PORT] or ldaps://HOST[:PORT]. */
  url: string;
  /** How the connection is protected: LDAPS, StartTLS on ldap://, or nothing (allow_plaintext). */
  tls: 'ldaps' | 'starttls' | 'none';
  /** PEM CA bundle the directory's certificate must chain to; undefined: the system's CAs. */
  caFile: string | undefined;
  bindDn: string;
  bindPasswordFile: string;
  userBaseDn: string;
  /** With {user}, escaped per RFC 4515 before it is put in. */
  userFilter: string;
  userScope: 'sub' | 'one';
  /** The attribute whose value is the gateway's name for the user (uid, sAMAccountName). */
  userAttribute: string;
  /** Read from the user's entry when there is no group search (memberOf). */
  groupAttribute: string;
  /** Set: groups are searched under it with groupFilter ({dn}, {user}) instead of read from groupAttribute. */
  groupBaseDn: string | undefined;
  groupFilter: string;
  groupNameAttribute: string;
  /** Directory group name, lowercased -> access groups. */
  groupMap: ReadonlyMap<string, readonly string[]>;
  /** Directory groups the map does not name: kept under their own name, or ignored. */
  unmappedGroups: 'keep' | 'ignore';
  /** Connect and each operation, seconds. */
  timeoutSeconds: number;
  /** Directory conversations (a login or a refresh) at once; more wait their turn, per client address. */
  maxConnections: number;
  /** "FILE:LINE:COLUMN: providers[N]" for messages about this provider. */
  where: string;
}

/** An attribute description: a name with options, or an OID. */
const attributePattern = /^(?:[A-Za-z][A-Za-z0-9-]*(?:;[A-Za-z0-9-]+)*|\d+(?:\.\d+)+)$/;

function attribute(entry: ProviderEntry, key: string, fallback: string): string {
  const value = entry.text(key, fallback);
  if (!attributePattern.test(value)) entry.fail(key, `${JSON.stringify(value)} is not an attribute name`);
  return value;
}

function readUrl(entry: ProviderEntry): { url: string; secure: boolean } {
  const text = entry.required('url', 'ldaps://ldap.example.com');
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    entry.fail('url', `${JSON.stringify(text)} is not a URL (expected e.g. ldaps://ldap.example.com:636)`);
  }
  if (url.protocol !== 'ldap:' && url.protocol !== 'ldaps:') entry.fail('url', 'must be an ldap:// or ldaps:// URL');
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash || url.username || url.password) {
    entry.fail('url', 'must be the scheme, host and port only: the base DNs and the bind account have keys of their own');
  }
  return { url: `${url.protocol}//${url.host}`, secure: url.protocol === 'ldaps:' };
}

export function parseLdapProvider(entry: ProviderEntry, name: string): LdapProviderConfig {
  const { url, secure } = readUrl(entry);
  const startTls = entry.flag('start_tls', false);
  const allowPlaintext = entry.flag('allow_plaintext', false);
  if (secure && startTls) entry.fail('start_tls', 'is for ldap:// URLs; an ldaps:// connection is TLS from the start');
  if (!secure && !startTls && !allowPlaintext) {
    entry.fail('url', 'ldap:// without TLS sends every password in clear: use ldaps://, or start_tls: true (allow_plaintext: true only where nobody can listen, e.g. a directory on this host)');
  }
  if (allowPlaintext && (secure || startTls)) entry.fail('allow_plaintext', 'only applies to ldap:// without start_tls');
  const caFile = entry.path('ca_file');
  if (caFile !== undefined && !secure && !startTls) entry.fail('ca_file', 'is for ldaps:// or start_tls: true');

  const userAttribute = attribute(entry, 'user_attribute', 'uid');
  const userFilter = entry.text('user_filter', `(${userAttribute}={user})`);
  const userFilterProblem = filterTemplateProblem(userFilter, ['user'], ['user']);
  if (userFilterProblem) entry.fail('user_filter', userFilterProblem);

  const groupBaseDn = entry.text('group_base_dn');
  const groupFilterGiven = entry.has('group_filter') || entry.has('group_name_attribute');
  const groupFilter = entry.text('group_filter', '(member={dn})');
  const groupFilterProblem = filterTemplateProblem(groupFilter, ['dn', 'user'], []);
  if (groupFilterProblem) entry.fail('group_filter', groupFilterProblem);
  const groupNameAttribute = attribute(entry, 'group_name_attribute', 'cn');
  if (groupFilterGiven && groupBaseDn === undefined) entry.fail('group_base_dn', 'required for a group search (group_filter, group_name_attribute); without it groups are read from group_attribute');
  const groupAttributeGiven = entry.has('group_attribute');
  const groupAttribute = attribute(entry, 'group_attribute', 'memberOf');
  if (groupAttributeGiven && groupBaseDn !== undefined) entry.fail('group_attribute', 'is not used with a group search (group_base_dn); set one or the other');

  const groupMap = new Map<string, readonly string[]>();
  for (const [directoryGroup, accessGroups] of entry.nameLists('group_map')) {
    const key = directoryGroup.toLowerCase();
    if (groupMap.has(key)) entry.fail('group_map', `${JSON.stringify(directoryGroup)} is mapped twice (directory group names are compared ignoring case)`);
    groupMap.set(key, accessGroups);
  }

  return {
    type: 'ldap',
    name,
    url,
    tls: secure ? 'ldaps' : startTls ? 'starttls' : 'none',
    caFile,
    bindDn: entry.required('bind_dn', 'cn=registry,ou=services,dc=example,dc=com'),
    bindPasswordFile: entry.path('bind_password_file') ?? entry.fail('bind_password_file', 'required: a file holding the service account password (one line)'),
    userBaseDn: entry.required('user_base_dn', 'ou=people,dc=example,dc=com'),
    userFilter,
    userScope: entry.choice('user_scope', ['sub', 'one'] as const, 'sub'),
    userAttribute,
    groupAttribute,
    groupBaseDn,
    groupFilter,
    groupNameAttribute,
    groupMap,
    unmappedGroups: entry.choice('unmapped_groups', ['keep', 'ignore'] as const, 'keep'),
    timeoutSeconds: entry.wholeNumber('timeout', 1, 120, 5),
    maxConnections: entry.wholeNumber('max_connections', 1, 64, 4),
    where: entry.where(),
  };
}

// The registry's name grammar (distribution/reference), used for paths and token scopes alike.

/** One path component of a repository name. */
const component = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';

const componentPattern = new RegExp(`^${component}$`);

/** A repository name: components joined by "/", anchored. */
const repositoryNamePattern = new RegExp(`^${component}(?:/${component})*$`);

/** A tag, anchored. */
const tagPattern = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/** A digest (algorithm:hex), anchored. */
const digestPattern = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;

/** An upload session id as the registry issues them (a UUID, but accept its route's character set). */
export const uploadIdPattern = /^[A-Za-z0-9_.=-]+$/;

const maxRepositoryNameLength = 255;

export function isRepositoryName(name: string): boolean {
  return name.length > 0 && name.length <= maxRepositoryNameLength && repositoryNamePattern.test(name);
}

/** One path component of a repository name, e.g. what a user name must be to stand for one. */
export function isRepositoryComponent(text: string): boolean {
  return text.length <= maxRepositoryNameLength && componentPattern.test(text);
}

export function isTag(reference: string): boolean {
  return tagPattern.test(reference);
}

export function isDigest(reference: string): boolean {
  return reference.length <= 1024 && digestPattern.test(reference);
}

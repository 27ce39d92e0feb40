/**
 * The default branch of a switch over a union: a member added to the union without a case of
 * its own fails the typecheck here, instead of falling through silently at run time.
 */
export function unhandled(value: never): never {
  throw new Error(`unhandled case ${JSON.stringify(value)}`);
}

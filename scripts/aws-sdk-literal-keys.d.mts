/** Types for the unit test (test/unit/build): the script itself is plain JavaScript, run by npm. */

/** `{ [name]: v }` → `{ "text": v }` where `name` is the module's top-level `const name = "text"`. */
export function literalKeys(sourceText: string): { text: string; keys: number };

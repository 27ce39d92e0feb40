/**
 * Puppet's rule for environment names (lowercase letters, digits and underscores), defined once:
 * the stack's context and the controller's environment both check against it.
 */
export const ENVIRONMENT_NAME_PATTERN = /^[a-z0-9_]+$/;

export const ENVIRONMENT_NAME_RULE = 'must be a Puppet environment name (a-z, 0-9, _)';


/**
 * How long a serving compile master's Puppet Server may stay unhealthy, counted from its last boot,
 * before the controller has the group replace it: the longest reboot or Puppet Server restart that
 * never costs a node. The stack's replaceUnhealthyAfterMinutes and the controller's
 * REPLACE_UNHEALTHY_AFTER_SECONDS both take their bounds from here.
 */
export const REPLACE_UNHEALTHY_AFTER_MINUTES = { default: 15, min: 5, max: 120 } as const;

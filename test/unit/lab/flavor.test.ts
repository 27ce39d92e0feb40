import { describe, expect, it } from 'vitest';
import { FLAVOR } from '../../../lib/flavor';
import { isLabFlavor, LAB_FLAVORS } from '../../../lab/scenario/flavor';
import { labTargetGroups } from '../../../lab/scenario/machine-tier';

describe("the lab's flavors", () => {
  it("gives the load balancer 8142 only on PE, as the stack's target groups", () => {
    expect(labTargetGroups('pe').map((group) => group.port)).toEqual([8140, 8142]);
    expect(labTargetGroups('oss').map((group) => group.port)).toEqual([8140]);
    for (const flavor of LAB_FLAVORS) expect(labTargetGroups(flavor).some((group) => group.port === 8142)).toBe(FLAVOR[flavor].pcpBroker);
  });

  it('runs pe and oss, not openvox (the lab installs Debian puppet packages)', () => {
    expect(['pe', 'oss', 'openvox', 'PE'].filter(isLabFlavor)).toEqual(['pe', 'oss']);
  });
});

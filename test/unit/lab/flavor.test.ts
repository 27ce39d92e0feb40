import { describe, expect, it } from 'vitest';
import { isLabFlavor } from '../../../lab/scenario/flavor';

describe("the lab's flavors", () => {
  it('runs pe and oss, not openvox (the lab installs Debian puppet packages)', () => {
    expect(['pe', 'oss', 'openvox', 'PE'].filter(isLabFlavor)).toEqual(['pe', 'oss']);
  });
});

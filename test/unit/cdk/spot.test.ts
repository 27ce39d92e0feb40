import { describe, expect, it } from 'vitest';
import { DEFAULT_INSTANCE_TYPES } from '../../../cdk/capacity';
import { loadConfig } from '../../../cdk/config';
import { ConfigError } from '../../../lib/errors';
import { only, synthStack } from './stack-fixture';

const load = (context: Record<string, unknown>) => loadConfig((key) => context[key]);
const refusal = (context: Record<string, unknown>): string => {
  try {
    load(context);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected the configuration to be refused');
};

describe('the group with spot (the default)', () => {
  const { template } = synthStack();
  const group = only(template, 'AWS::AutoScaling::AutoScalingGroup').properties;
  const launchTemplate = only(template, 'AWS::EC2::LaunchTemplate');

  it('launches the default types from the launch template: one on-demand base, spot above it, price-capacity-optimized', () => {
    expect(group.MixedInstancesPolicy).toEqual({
      LaunchTemplate: {
        LaunchTemplateSpecification: {
          LaunchTemplateId: { Ref: launchTemplate.logicalId },
          Version: { 'Fn::GetAtt': [launchTemplate.logicalId, 'LatestVersionNumber'] },
        },
        Overrides: DEFAULT_INSTANCE_TYPES.map((type) => ({ InstanceType: type })),
      },
      InstancesDistribution: {
        OnDemandAllocationStrategy: 'prioritized',
        OnDemandBaseCapacity: 1,
        OnDemandPercentageAboveBaseCapacity: 0,
        SpotAllocationStrategy: 'price-capacity-optimized',
      },
    });
    expect(launchTemplate.properties.LaunchTemplateData.InstanceType).toBe(DEFAULT_INSTANCE_TYPES[0]);
  });

  it('replaces an at-risk spot instance before it is interrupted', () => {
    expect(group.CapacityRebalance).toBe(true);
    expect(group.LaunchTemplate).toBeUndefined();
  });
});

describe('the group without spot', () => {
  const { template } = synthStack({ spot: 'false' });
  const group = only(template, 'AWS::AutoScaling::AutoScalingGroup').properties;

  it('is a plain on-demand group of the launch template', () => {
    expect(group.MixedInstancesPolicy).toBeUndefined();
    expect(group.CapacityRebalance).toBeUndefined();
    expect(group.LaunchTemplate).toMatchObject({ LaunchTemplateId: { Ref: only(template, 'AWS::EC2::LaunchTemplate').logicalId } });
  });
});

describe('configured spot capacity', () => {
  it('takes the listed types, base and percentage, and an arm64 list gets an arm64 image', () => {
    const { template } = synthStack({
      instanceTypes: 'm7g.xlarge, m6g.xlarge',
      onDemandBaseCapacity: '2',
      onDemandPercentageAboveBaseCapacity: '25',
    });
    const group = only(template, 'AWS::AutoScaling::AutoScalingGroup').properties;
    expect(group.MixedInstancesPolicy.LaunchTemplate.Overrides).toEqual([{ InstanceType: 'm7g.xlarge' }, { InstanceType: 'm6g.xlarge' }]);
    expect(group.MixedInstancesPolicy.InstancesDistribution).toMatchObject({ OnDemandBaseCapacity: 2, OnDemandPercentageAboveBaseCapacity: 25 });
    const data = only(template, 'AWS::EC2::LaunchTemplate').properties.LaunchTemplateData;
    expect(data.InstanceType).toBe('m7g.xlarge');
    expect(JSON.stringify(data.ImageId)).toContain('arm64');
  });
});

describe('instanceType and instanceTypes', () => {
  it.each([
    [{}, 'm6i.xlarge', [...DEFAULT_INSTANCE_TYPES]],
    // A type set alone means that type only, as before spot: no default list of another architecture.
    [{ instanceType: 'm7g.2xlarge' }, 'm7g.2xlarge', ['m7g.2xlarge']],
    [{ instanceTypes: '["c6i.2xlarge","c6a.2xlarge"]' }, 'c6i.2xlarge', ['c6i.2xlarge', 'c6a.2xlarge']],
    [{ instanceType: 'c6i.2xlarge', instanceTypes: ['c6i.2xlarge', 'c6a.2xlarge'] }, 'c6i.2xlarge', ['c6i.2xlarge', 'c6a.2xlarge']],
    [{ spot: false }, 'm6i.xlarge', ['m6i.xlarge']],
    [{ spot: 'false', instanceTypes: 'c6i.2xlarge' }, 'c6i.2xlarge', ['c6i.2xlarge']],
  ])('%j: launch template %s, group %j', (context, instanceType, instanceTypes) => {
    expect(load(context)).toMatchObject({ instanceType, instanceTypes });
  });

  it.each([
    [{ instanceType: 'm6a.xlarge', instanceTypes: ['m6i.xlarge', 'm6a.xlarge'] }, 'instanceType', 'must be the first of instanceTypes (m6i.xlarge)'],
    [{ instanceTypes: 'm6i.xlarge,m7g.xlarge,m6g.xlarge' }, 'instanceTypes', 'mixes architectures (m6i.xlarge x86_64; m7g.xlarge, m6g.xlarge arm64)'],
    [{ instanceTypes: 'm6i.xlarge,m5.xlarge,m6i.xlarge' }, 'instanceTypes', 'names m6i.xlarge more than once'],
    [{ instanceTypes: [] }, 'instanceTypes', 'expected array to have >=1 items'],
    [{ instanceTypes: 'm6i.xlarge,huge' }, 'instanceTypes', 'EC2 instance type'],
    [{ spot: 'false', instanceTypes: 'm6i.xlarge,m6a.xlarge' }, 'instanceTypes', 'but spot is false'],
    [{ spot: 'false', onDemandBaseCapacity: 2 }, 'onDemandBaseCapacity', 'only used with spot=true'],
    [{ spot: 'false', onDemandPercentageAboveBaseCapacity: 50 }, 'onDemandPercentageAboveBaseCapacity', 'only used with spot=true'],
    [{ spot: 'no' }, 'spot', 'expected boolean'],
    [{ onDemandPercentageAboveBaseCapacity: 101 }, 'onDemandPercentageAboveBaseCapacity', '<=100'],
  ])('%j is refused on %s', (context, key, problem) => {
    const message = refusal(context);
    expect(message).toContain(`- ${key}`);
    expect(message).toContain(problem);
    expect(message).toContain(`Example: -c ${key}=`);
  });
});

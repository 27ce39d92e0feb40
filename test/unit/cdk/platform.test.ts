import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { VENDOR_REPOSITORY } from '../../../cdk/agent-install';
import { loadConfig } from '../../../cdk/config';
import { EFS_UTILS_SOURCE, type Platform, instanceArchitecture, peRepoClass } from '../../../cdk/platform';
import { renderPrimarySetup } from '../../../cli/primary-setup';
import { parseConfig } from '../../../node-agent/src/config';
import { SIGNING_KEY_FILE as keyFile } from './real-deploy-context';
import { type Cfn, only, renderAsDeployed, synthStack } from './stack-fixture';

const config = (context: Record<string, unknown>) => loadConfig((key) => context[key]);

/** The launch template's image: the SSM parameter (name) its ImageId resolves from. */
function imageParameterOf(template: ReturnType<typeof synthStack>['template']): string {
  const imageId = only(template, 'AWS::EC2::LaunchTemplate').properties.LaunchTemplateData.ImageId;
  const parameter = template.toJSON().Parameters[imageId.Ref];
  expect(parameter.Type).toBe('AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>');
  return parameter.Default;
}

/** The user data script, with CloudFormation references left as placeholders. */
function userDataOf(template: ReturnType<typeof synthStack>['template']): string {
  const data: Cfn = only(template, 'AWS::EC2::LaunchTemplate').properties.LaunchTemplateData.UserData['Fn::Base64'];
  const parts: Cfn[] = typeof data === 'string' ? [data] : data['Fn::Join'][1];
  return parts.map((part) => (typeof part === 'string' ? part : '<ref>')).join('');
}

describe('instanceArchitecture', () => {
  it.each([
    ['m6i.xlarge', 'x86_64'],
    ['c7a.2xlarge', 'x86_64'],
    ['m7g.xlarge', 'arm64'],
    ['c6gn.large', 'arm64'],
    ['r8g.4xlarge', 'arm64'],
  ])('%s is %s', (type, arch) => expect(instanceArchitecture(type)).toBe(arch));
});

const CASES: [Platform, string, string, string, RegExp][] = [
  ['al2023', 'm6i.xlarge', '/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64', '/dev/xvda', /dnf install -y amazon-efs-utils/],
  ['al2023', 'm7g.xlarge', '/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-arm64', '/dev/xvda', /dnf install -y amazon-efs-utils/],
  ['ubuntu2204', 'm6i.xlarge', '/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id', '/dev/sda1', /\.\/build-deb\.sh && apt-get -o DPkg::Lock::Timeout=600 install -y \.\/build\/amazon-efs-utils\*\.deb/],
  ['ubuntu2204', 'm7g.xlarge', '/aws/service/canonical/ubuntu/server/22.04/stable/current/arm64/hvm/ebs-gp2/ami-id', '/dev/sda1', /build-deb\.sh/],
  ['ubuntu2404', 'm6i.xlarge', '/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id', '/dev/sda1', /build-deb\.sh/],
  ['ubuntu2404', 'm7g.xlarge', '/aws/service/canonical/ubuntu/server/24.04/stable/current/arm64/hvm/ebs-gp3/ami-id', '/dev/sda1', /build-deb\.sh/],
];

describe.each(CASES)('platform %s on %s', (platform, instanceType, parameter, device, efsInstall) => {
  const { template } = synthStack({ platform, instanceType, flavor: 'openvox', agentRepositoryKeyFile: keyFile });
  const launch = only(template, 'AWS::EC2::LaunchTemplate').properties.LaunchTemplateData;

  it('launches the platform\'s current public image for the architecture, resolved at deploy time', () => {
    expect(imageParameterOf(template)).toBe(parameter);
  });

  it('puts the encrypted root volume on the platform\'s root device', () => {
    expect(launch.BlockDeviceMappings).toEqual([expect.objectContaining({ DeviceName: device, Ebs: expect.objectContaining({ Encrypted: true }) })]);
  });

  it('installs efs-utils the platform\'s way, only when the image lacks it, then mounts with TLS and IAM', () => {
    const script = userDataOf(template);
    expect(script).toMatch(efsInstall);
    expect(script.indexOf('if ! command -v mount.efs')).toBeLessThan(script.search(efsInstall));
    expect(script).toMatch(/ efs _netdev,nofail,noresvport,tls,iam,accesspoint=<ref>,ro 0 0/);
  });

  it('opens HTTP out only where apt fetches Ubuntu\'s archives (port 80), HTTPS everywhere', () => {
    const group = Object.values(template.findResources('AWS::EC2::SecurityGroup')).find((resource) =>
      String((resource as Cfn).Properties.GroupDescription).startsWith('Compile masters'),
    ) as Cfn;
    const anywhere = (group.Properties.SecurityGroupEgress as Cfn[]).filter((rule) => rule.CidrIp === '0.0.0.0/0').map((rule) => rule.FromPort);
    expect(anywhere.sort()).toEqual(platform.startsWith('ubuntu') ? [443, 80] : [443]);
  });

  it('tells the bootstrap the platform\'s vendor repository and package manager', () => {
    const content = only(template, 'Custom::CompileMasterEfsContent').properties;
    const agent = parseConfig(JSON.parse(renderAsDeployed(template, content.AgentConfig)), 'agent.json');
    expect(agent.agentInstall).toEqual({ source: 'repository', package: 'openvox-agent', ...VENDOR_REPOSITORY.openvox[platform] });
  });
});

describe('efs-utils built from source (Ubuntu, RHEL-family)', () => {
  const { template } = synthStack({ platform: 'rhel9', amiId: 'ami-0123456789abcdef0' });
  const script = userDataOf(template);

  it('builds the rpm with dnf from the pinned tag and refuses a tag that moved', () => {
    expect(script).toContain(`git clone --quiet --depth 1 --branch ${EFS_UTILS_SOURCE.tag} ${EFS_UTILS_SOURCE.repository}`);
    expect(script).toContain(`[ "$(git -C "$src" rev-parse HEAD)" = ${EFS_UTILS_SOURCE.commit} ] || {`);
    expect(script).toMatch(/make rpm && dnf install -y \.\/build\/amazon-efs-utils\*\.rpm/);
    expect(script).not.toMatch(/apt-get/);
  });

  it('takes the operator\'s image and RHEL\'s root device', () => {
    const launch = only(template, 'AWS::EC2::LaunchTemplate').properties.LaunchTemplateData;
    expect(launch.ImageId).toBe('ami-0123456789abcdef0');
    expect(launch.BlockDeviceMappings[0].DeviceName).toBe('/dev/sda1');
  });

  it('the commit check really refuses another commit', () => {
    const check = script.split('\n').find((line) => line.includes('rev-parse HEAD'))!.trim();
    const bin = mkdtempSync(join(tmpdir(), 'efs-utils-git-'));
    const withHead = (head: string) => {
      writeFileSync(join(bin, 'git'), `#!/bin/sh\necho ${head}\n`);
      chmodSync(join(bin, 'git'), 0o755);
      return spawnSync('bash', ['-c', `src=/nowhere\n${check}\necho accepted`], { encoding: 'utf8', env: { ...process.env, PATH: `${bin}:/usr/bin:/bin` } });
    };
    expect(withHead(EFS_UTILS_SOURCE.commit)).toMatchObject({ status: 0, stdout: 'accepted\n' });
    expect(withHead('0'.repeat(40))).toMatchObject({ status: 1, stdout: '', stderr: `efs-utils ${EFS_UTILS_SOURCE.tag} is not commit ${EFS_UTILS_SOURCE.commit}: refusing it\n` });
  });
});

describe('platform settings refused or resolved at synth', () => {
  it('refuses rhel9 without an image, and says where to find one', () => {
    expect(() => config({ platform: 'rhel9' })).toThrow(/amiId: is required with platform rhel9: RHEL-family 9 has no public SSM parameter: set amiId or amiSsmParameter.*--owners 309956199498/);
  });

  it.each([{ amiId: 'ami-0123456789abcdef0' }, { amiSsmParameter: '/golden/rhel9' }])('takes rhel9 with %o', (image) => {
    expect(config({ platform: 'rhel9', ...image }).platform).toBe('rhel9');
  });

  it('refuses an unknown platform, naming the choices', () => {
    expect(() => config({ platform: 'debian12' })).toThrow(/platform: .*"al2023".*"rhel9".*"ubuntu2204".*"ubuntu2404".*Example: -c platform=ubuntu2404/s);
  });

  it('defaults the root device to the platform\'s, and an explicit one wins', () => {
    expect(config({}).rootDeviceName).toBe('/dev/xvda');
    expect(config({ platform: 'ubuntu2204' }).rootDeviceName).toBe('/dev/sda1');
    expect(config({ platform: 'ubuntu2204', rootDeviceName: '/dev/xvda' }).rootDeviceName).toBe('/dev/xvda');
  });

  it('takes the primary to be like the compile masters unless told otherwise', () => {
    expect(config({ platform: 'ubuntu2404', instanceType: 'm7g.large' })).toMatchObject({ architecture: 'arm64', primaryPlatform: 'ubuntu2404', primaryArchitecture: 'arm64' });
    expect(config({ primaryPlatform: 'rhel9', primaryArchitecture: 'arm64' })).toMatchObject({ platform: 'al2023', architecture: 'x86_64', primaryPlatform: 'rhel9', primaryArchitecture: 'arm64' });
  });
});

describe('PE: compile masters on another platform than the primary', () => {
  it.each([
    ['ubuntu2204', 'm6i.xlarge', 'pe_repo::platform::ubuntu_2204_amd64'],
    ['ubuntu2404', 'm7g.xlarge', 'pe_repo::platform::ubuntu_2404_aarch64'],
    ['rhel9', 'm6i.xlarge', 'pe_repo::platform::el_9_x86_64'],
    ['al2023', 'm7g.xlarge', 'pe_repo::platform::amazon_2023_aarch64'],
  ] as const)('%s on %s: primary-setup names %s for the PE Master node group', (platform, instanceType, peClass) => {
    const settings = config({ platform, instanceType, primaryPlatform: platform === 'rhel9' ? 'al2023' : 'rhel9', primaryArchitecture: 'x86_64', amiId: 'ami-0123456789abcdef0' });
    expect(peRepoClass(settings.platform, settings.architecture)).toBe(peClass);
    const { text } = renderPrimarySetup(settings);
    expect(text).toContain(`PE Master node group, Classes: add ${peClass}`);
  });

  it('says nothing of pe_repo when the platforms agree, nor on open source', () => {
    expect(renderPrimarySetup(config({ platform: 'ubuntu2204' })).text).not.toContain('pe_repo');
    expect(renderPrimarySetup(config({ flavor: 'oss', platform: 'ubuntu2204', primaryPlatform: 'rhel9' })).text).not.toContain('pe_repo');
  });

  it('warns at synth, naming the class', () => {
    const { stack } = synthStack({ platform: 'ubuntu2204', primaryPlatform: 'al2023' });
    Annotations.fromStack(stack).hasWarning('*', Match.stringLikeRegexp('ubuntu-22.04-amd64\\) differ from the primary \\(amazon-2023-x86_64\\).*pe_repo::platform::ubuntu_2204_amd64'));
    Annotations.fromStack(synthStack({ platform: 'ubuntu2204' }).stack).hasNoWarning('*', Match.stringLikeRegexp('differ from the primary'));
  });
});

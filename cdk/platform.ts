import * as ec2 from 'aws-cdk-lib/aws-ec2';

/**
 * The operating systems the compile masters can run. PE requires compilers on the primary's OS,
 * version and architecture, so the platform is the operator's choice, not ours; everything that
 * follows from it (image, root device, package manager, EFS client, vendor repositories, PE's
 * pe_repo class) is in this one table.
 */
export const PLATFORMS = ['al2023', 'rhel9', 'ubuntu2204', 'ubuntu2404'] as const;
export type Platform = (typeof PLATFORMS)[number];

export const ARCHITECTURES = ['x86_64', 'arm64'] as const;
export type Architecture = (typeof ARCHITECTURES)[number];

/** The one place that maps an instance type to an architecture (Graviton types are arm64). */
export function instanceArchitecture(instanceType: string): Architecture {
  return new ec2.InstanceType(instanceType).architecture === ec2.InstanceArchitecture.ARM_64 ? 'arm64' : 'x86_64';
}

export type PackageManager = 'dnf' | 'apt';

/**
 * efs-utils 1.x is Python and stunnel only: it builds into a .deb or .rpm in seconds from the
 * distribution's own packages. 2.x and later add a Rust proxy that needs Rust 1.91+ and Go, which
 * no supported distribution ships; fetching a toolchain at every boot is slower and harder to pin.
 * The tag is checked against its commit id, so a moved tag is refused.
 */
export const EFS_UTILS_SOURCE = {
  repository: 'https://github.com/aws/efs-utils.git',
  tag: 'v1.36.0',
  commit: 'c87d19f3e1db26532f09a7fed338347aacb90e10',
} as const;

export interface PlatformTraits {
  readonly title: string;
  readonly packageManager: PackageManager;
  /** The root volume's device name in the platform's public images. */
  readonly rootDeviceName: string;
  /**
   * The default image, resolved by CloudFormation from a public SSM parameter at deploy time (so
   * synth stays offline): CDK's latestAmazonLinux2023, or the vendor's parameter for an
   * architecture; none where no public parameter exists (the operator names an image).
   */
  readonly defaultImage: { readonly source: 'amazon-linux-2023' } | { readonly source: 'ssm'; readonly parameter: (arch: Architecture) => string } | { readonly source: 'none'; readonly howToFind: string };
  /** Where amazon-efs-utils comes from: the distribution's repositories, or built from source. */
  readonly efsUtils: 'distribution' | 'source';
  /** The puppet-agent platform tag (PE's pe_repo::platform class and agent_platform use it). */
  readonly peTag: (arch: Architecture) => string;
}

/**
 * Canonical's parameters name the root volume type its images were built for: 22.04's are
 * published as ebs-gp2 (image names hvm-ssd/…), 24.04's as ebs-gp3 (hvm-ssd-gp3/…). The launch
 * template's own gp3 root volume applies either way.
 */
const ubuntuImage = (version: string, volume: 'ebs-gp2' | 'ebs-gp3') => (arch: Architecture) =>
  `/aws/service/canonical/ubuntu/server/${version}/stable/current/${arch === 'arm64' ? 'arm64' : 'amd64'}/hvm/${volume}/ami-id`;

const ubuntuTag = (version: string) => (arch: Architecture) => `ubuntu-${version}-${arch === 'arm64' ? 'aarch64' : 'amd64'}`;
const rpmTag = (os: string) => (arch: Architecture) => `${os}-${arch === 'arm64' ? 'aarch64' : 'x86_64'}`;

/**
 * Where RHEL-family 9 images come from, for the refusal at synth: AWS publishes no public SSM
 * parameter for them, so the operator names the image (amiId) or their own parameter.
 */
export const RHEL_IMAGE_HINT =
  'RHEL-family 9 has no public SSM parameter: set amiId or amiSsmParameter. Find an image with ' +
  "aws ec2 describe-images --owners 309956199498 --filters 'Name=name,Values=RHEL-9.*' 'Name=architecture,Values=<x86_64|arm64>' (Red Hat); " +
  "Rocky Linux and AlmaLinux publish theirs under their own owner ids (check them on the distributions' sites), " +
  'or bake your own with efs-utils and the agent preinstalled';

export const PLATFORM: Readonly<Record<Platform, PlatformTraits>> = {
  al2023: {
    title: 'Amazon Linux 2023',
    packageManager: 'dnf',
    rootDeviceName: '/dev/xvda',
    defaultImage: { source: 'amazon-linux-2023' },
    efsUtils: 'distribution',
    peTag: rpmTag('amazon-2023'),
  },
  rhel9: {
    title: 'RHEL-family 9 (RHEL, Rocky, Alma)',
    packageManager: 'dnf',
    rootDeviceName: '/dev/sda1',
    defaultImage: { source: 'none', howToFind: RHEL_IMAGE_HINT },
    efsUtils: 'source',
    peTag: rpmTag('el-9'),
  },
  ubuntu2204: {
    title: 'Ubuntu 22.04',
    packageManager: 'apt',
    rootDeviceName: '/dev/sda1',
    defaultImage: { source: 'ssm', parameter: ubuntuImage('22.04', 'ebs-gp2') },
    efsUtils: 'source',
    peTag: ubuntuTag('22.04'),
  },
  ubuntu2404: {
    title: 'Ubuntu 24.04',
    packageManager: 'apt',
    rootDeviceName: '/dev/sda1',
    defaultImage: { source: 'ssm', parameter: ubuntuImage('24.04', 'ebs-gp3') },
    efsUtils: 'source',
    peTag: ubuntuTag('24.04'),
  },
};

/** PE's class that makes the primary serve this platform's agent packages (pe_repo). */
export function peRepoClass(platform: Platform, arch: Architecture): string {
  return `pe_repo::platform::${PLATFORM[platform].peTag(arch).replace(/\./g, '').replace(/-/g, '_')}`;
}

/**
 * The user data lines that make `mount -t efs` available: from the distribution where it packages
 * amazon-efs-utils, else built from EFS_UTILS_SOURCE with the distribution's tools. Either way the
 * mount keeps TLS and IAM authorization; an image that already has mount.efs skips all of it.
 */
export function efsUtilsInstall(platform: Platform): string[] {
  const { packageManager, efsUtils } = PLATFORM[platform];
  if (efsUtils === 'distribution') return ['dnf install -y amazon-efs-utils'];
  const { repository, tag, commit } = EFS_UTILS_SOURCE;
  const build =
    packageManager === 'apt'
      ? [
          'export DEBIAN_FRONTEND=noninteractive',
          // cloud-init and unattended-upgrades hold dpkg's lock at first boot: wait for it.
          'apt-get -o DPkg::Lock::Timeout=600 update',
          'apt-get -o DPkg::Lock::Timeout=600 install -y git binutils',
          'build() { ./build-deb.sh && apt-get -o DPkg::Lock::Timeout=600 install -y ./build/amazon-efs-utils*.deb; }',
        ]
      : ['dnf install -y git make rpm-build', 'build() { make rpm && dnf install -y ./build/amazon-efs-utils*.rpm; }'];
  return [
    ...build,
    'src="$(mktemp -d)"',
    `git clone --quiet --depth 1 --branch ${tag} ${repository} "$src"`,
    // A tag can be moved; the commit id cannot be forged.
    `[ "$(git -C "$src" rev-parse HEAD)" = ${commit} ] || { echo "efs-utils ${tag} is not commit ${commit}: refusing it" >&2; exit 1; }`,
    '(cd "$src" && build)',
    'rm -rf "$src"',
  ];
}

export interface PlatformChoice {
  readonly platform: Platform;
  readonly architecture: Architecture;
  readonly primaryPlatform: Platform;
  readonly primaryArchitecture: Architecture;
}

/**
 * On PE, compile masters of another platform or architecture than the primary's get their
 * puppet-agent from the primary only once its PE Master node group has that platform's pe_repo
 * class (install.bash fails without it). Undefined when the platforms agree.
 */
export function peRepoClassNeeded(choice: PlatformChoice): { compilers: string; primary: string; peRepoClass: string } | undefined {
  const compilers = PLATFORM[choice.platform].peTag(choice.architecture);
  const primary = PLATFORM[choice.primaryPlatform].peTag(choice.primaryArchitecture);
  if (compilers === primary) return undefined;
  return { compilers, primary, peRepoClass: peRepoClass(choice.platform, choice.architecture) };
}

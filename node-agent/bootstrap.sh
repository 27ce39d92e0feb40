#!/usr/bin/env bash
# First-boot bootstrap of a compile master. The launch template's user data mounts the EFS share
# at /mnt/compile-masters and runs `bash /mnt/compile-masters/bootstrap.sh`; the stack copies this
# file there. It installs what the node agent needs and starts it; the agent does the enrollment.
# Safe to run again: every step converges.
#
# Node.js: the stack ships the official Node.js build for this instance's architecture on the
# share (node-runtime/node, with a manifest naming its version, architecture and SHA-256); it is
# copied to the local disk, so a reboot or an EFS hiccup does not take the units' runtime away,
# and checked against the manifest before use. Nothing comes from the distribution.
#
# Puppet agent: when the configured puppet binary is missing, it comes from where agent.json's
# agentInstall says (the stack's agentSource):
# - primary (PE): the primary's /packages/current/install.bash, as Puppet Enterprise documents it,
#   over TLS verified against the pinned CA certificate;
# - repository (open-source Puppet, OpenVox): the vendor's package repository, every package
#   checked against the signing key the stack pinned beside agent.json, and no other key;
# - ami: nothing is installed; the image must carry it.
# Sourcing this file (tests) defines the functions without running anything.
set -euo pipefail

readonly SHARE="${COMPILE_MASTERS_SHARE:-/mnt/compile-masters}"
readonly ETC_DIR=/etc/compile-master-agent
readonly LIB_DIR=/usr/local/lib/compile-master-agent
readonly UNIT_NAME=compile-master-agent.service
readonly CRL_UNIT_NAME=compile-master-crl-refresh.service
readonly READINESS_UNIT_NAME=compile-master-readiness.service
readonly SIGNING_KEY_NAME=package-signing-key.asc
# Debian's hook that lets an installation start services or not (tests point it elsewhere).
readonly POLICY_RC_D="${COMPILE_MASTERS_POLICY_RC_D:-/usr/sbin/policy-rc.d}"
# The units' ExecStart runs this Node.js.
readonly RUNTIME_DIR=$LIB_DIR/node
readonly NODE=$RUNTIME_DIR/bin/node

log() { printf 'compile-master bootstrap: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# Reads one key of the runtime manifest the stack wrote beside the binary.
manifest_value() { sed -n "s/^$2=//p" "$1"; }

# This machine's architecture in the stack's words (EC2's instance-type architectures).
machine_architecture() {
  local machine
  machine="$(uname -m)"
  case "$machine" in
    x86_64) printf 'x86_64\n' ;;
    aarch64) printf 'arm64\n' ;;
    *) printf '%s\n' "$machine" ;;
  esac
}

# Copies the shipped Node.js from the share's runtime directory ($1) to $2/bin/node, and refuses a
# copy that is not the manifest's: another architecture, other bytes, or another version.
install_node_runtime() {
  local from="$1" to="$2" version architecture sha256 staging actual
  version="$(manifest_value "$from/manifest" version)"
  architecture="$(manifest_value "$from/manifest" architecture)"
  sha256="$(manifest_value "$from/manifest" sha256)"
  [[ -n "$version" && -n "$architecture" && -n "$sha256" ]] || die "$from/manifest names no version, architecture and sha256: redeploy the stack"
  [[ "$architecture" == "$(machine_architecture)" ]] || die "the stack ships Node.js for $architecture, this instance is $(uname -m): the stack's instanceType and this instance disagree"
  # Bootstraps before the shipped runtime linked the distribution's node here.
  if [[ -L "$to" || -f "$to" ]]; then rm -f "$to"; fi
  install -d -m 0755 "$to" "$to/bin"
  staging="$(mktemp "$to/bin/.node.XXXXXX")"
  cp "$from/node" "$staging"
  actual="$(sha256sum "$staging")"
  if [[ "${actual%% *}" != "$sha256" ]]; then
    rm -f "$staging"
    die "$from/node is not the runtime the manifest names (SHA-256 ${actual%% *}, expected $sha256): was the share being rewritten? run this script again"
  fi
  chmod 0755 "$staging"
  if ! actual="$("$staging" --version 2>&1)" || [[ "$actual" != "v$version" ]]; then
    rm -f "$staging"
    die "the shipped Node.js reports '$actual', its manifest says v$version: refusing it; redeploy the stack"
  fi
  # A rename: units running the previous runtime keep it until they restart.
  mv -f "$staging" "$to/bin/node"
  log "Node.js v$version ($architecture) installed at $to/bin/node"
}

# Reads one value from the agent configuration by its dotted path (with the agent's defaults).
config_value() {
  "$NODE" -e '
    const config = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8"));
    const defaults = { caPort: 8140, puppetBin: "/opt/puppetlabs/bin/puppet", agentInstall: { source: "primary" } };
    const at = (object) => process.argv[2].split(".").reduce((value, key) => value?.[key], object);
    process.stdout.write(String(at(config) ?? at(defaults) ?? ""));
  ' "$ETC_DIR/agent.json" "$1"
}

# Every branch installs puppet-agent or stops the bootstrap with the reason.
install_puppet_agent() {
  local source
  source="$(config_value agentInstall.source)"
  case "$source" in
    primary) install_from_primary ;;
    repository) install_from_repository "$(config_value agentInstall.package)" "$ETC_DIR/$SIGNING_KEY_NAME" ;;
    ami) die "$(config_value puppetBin) is missing and agentSource is ami: bake the agent package into the image" ;;
    *) die "unknown agentInstall.source '$source' in $ETC_DIR/agent.json" ;;
  esac
}

# One function per package manager; agent.json names the platform's (the stack's platform setting).
install_from_repository() {
  local package="$1" key="$2" manager
  [[ -s "$key" ]] || die "no package-signing key at $key: set agentRepositoryKeyFile (the vendor's public key) in the stack's context and deploy, or use agentSource ami"
  manager="$(config_value agentInstall.packageManager)"
  case "$manager" in
    dnf | apt) command -v "${manager/apt/apt-get}" >/dev/null 2>&1 || die "no $manager here, yet agent.json says the platform uses it: is the stack's platform setting this image's?" ;;
    *) die "unknown agentInstall.packageManager '$manager' in $ETC_DIR/agent.json" ;;
  esac
  case "$manager" in
    dnf) install_with_dnf "$package" "$(config_value agentInstall.rpmBaseUrl)" "$key" /etc/yum.repos.d ;;
    apt) install_with_apt "$package" "$(config_value agentInstall.aptUri)" "$(config_value agentInstall.aptSuite)" "$(config_value agentInstall.aptComponent)" "$key" /etc/apt ;;
  esac
}

# The repository definition pinned to the stack's key: dnf refuses an unsigned package or a bad
# signature, and the only key it imports for this repository is that file.
dnf_repository() {
  local package="$1" base_url="$2" key="$3"
  printf '%s\n' \
    "[compile-masters-$package]" \
    "name=$package for compile masters (signing key pinned by the stack)" \
    "baseurl=$base_url" \
    "enabled=1" \
    "gpgcheck=1" \
    "gpgkey=file://$key"
}

install_with_dnf() {
  local package="$1" base_url="$2" key="$3" repos_dir="$4"
  log "installing $package from $base_url"
  dnf_repository "$package" "$base_url" "$key" >"$repos_dir/compile-masters-$package.repo"
  # The package leaves the puppet service disabled (systemd presets), as the node agent needs:
  # it runs Puppet itself once the node is enrolled.
  dnf install -y "$package"
}

# The apt source trusts the stack's key and no other (signed-by): apt refuses the repository's
# metadata, and so its packages, unless that key signed them. apt reads an ASCII-armored key when
# its file ends in .asc, so no gpg is needed.
apt_source() {
  local uri="$1" suite="$2" component="$3" keyring="$4"
  printf 'deb [signed-by=%s] %s %s %s\n' "$keyring" "$uri" "$suite" "$component"
}

install_with_apt() {
  local package="$1" uri="$2" suite="$3" component="$4" key="$5" apt_dir="$6"
  local keyring="$apt_dir/keyrings/compile-masters-$package.asc"
  log "installing $package from $uri $suite $component"
  install -d -m 0755 "$apt_dir/keyrings" "$apt_dir/sources.list.d"
  install -m 0644 "$key" "$keyring"
  apt_source "$uri" "$suite" "$component" "$keyring" >"$apt_dir/sources.list.d/compile-masters-$package.list"
  apt-get -o DPkg::Lock::Timeout=600 update
  # Debian packages start their services at install; the puppet service must not run before the
  # node agent has enrolled the node, so installation may start nothing (unless the image already
  # has a policy of its own).
  local own_policy=false
  if [[ ! -e "$POLICY_RC_D" ]]; then
    own_policy=true
    printf '#!/bin/sh\n# compile-master bootstrap: start no service while puppet-agent installs\nexit 101\n' >"$POLICY_RC_D"
    chmod 0755 "$POLICY_RC_D"
  fi
  local status=0
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y "$package" || status=$?
  if [[ "$own_policy" == true ]]; then rm -f "$POLICY_RC_D"; fi
  [[ "$status" -eq 0 ]] || die "apt-get install $package failed ($status)"
}

install_from_primary() {
  local primary port script
  primary="$(config_value primaryServer)"
  port="$(config_value caPort)"
  [[ -n "$primary" ]] || die "primaryServer is missing from $ETC_DIR/agent.json"
  script="$(mktemp)"
  # Downloaded to a file first so that a truncated download is never half-executed.
  log "installing puppet-agent from https://$primary:$port/packages/current/install.bash"
  curl --fail --silent --show-error --retry 10 --retry-delay 15 --retry-all-errors \
    --cacert "$ETC_DIR/ca.pem" --output "$script" \
    "https://$primary:$port/packages/current/install.bash"
  # The node agent writes the certname, alt names and extensions and submits the CSR itself;
  # the puppet service stays stopped until the node is enrolled and classified.
  bash "$script" --puppet-service-ensure stopped --puppet-service-enable false
  rm -f "$script"
}

main() {
  [[ "$(id -u)" -eq 0 ]] || die "must run as root"
  local file
  for file in config/agent.json config/ca.pem node-runtime/node node-runtime/manifest node-agent/node-agent.mjs node-agent/$UNIT_NAME node-agent/$CRL_UNIT_NAME node-agent/$READINESS_UNIT_NAME; do
    [[ -s "$SHARE/$file" ]] || die "$SHARE/$file is missing or empty: is the EFS share mounted at $SHARE?"
  done

  # Public material only (the CA certificate and non-secret settings), root-owned and read-only.
  install -d -m 0755 -o root -g root "$ETC_DIR" "$LIB_DIR"
  install -m 0644 -o root -g root "$SHARE/config/agent.json" "$ETC_DIR/agent.json"
  install -m 0644 -o root -g root "$SHARE/config/ca.pem" "$ETC_DIR/ca.pem"
  # Only where the stack pins one (agentSource repository); a key removed from the stack goes here too.
  if [[ -s "$SHARE/config/$SIGNING_KEY_NAME" ]]; then
    install -m 0644 -o root -g root "$SHARE/config/$SIGNING_KEY_NAME" "$ETC_DIR/$SIGNING_KEY_NAME"
  else
    rm -f "$ETC_DIR/$SIGNING_KEY_NAME"
  fi

  install_node_runtime "$SHARE/node-runtime" "$RUNTIME_DIR"

  local puppet_bin
  puppet_bin="$(config_value puppetBin)"
  [[ -x "$puppet_bin" ]] || install_puppet_agent
  [[ -x "$puppet_bin" ]] || die "$puppet_bin is still missing after installing puppet-agent"

  install -m 0644 -o root -g root "$SHARE/node-agent/node-agent.mjs" "$LIB_DIR/node-agent.mjs"
  install -m 0644 -o root -g root "$SHARE/node-agent/$UNIT_NAME" "/etc/systemd/system/$UNIT_NAME"
  install -m 0644 -o root -g root "$SHARE/node-agent/$CRL_UNIT_NAME" "/etc/systemd/system/$CRL_UNIT_NAME"
  install -m 0644 -o root -g root "$SHARE/node-agent/$READINESS_UNIT_NAME" "/etc/systemd/system/$READINESS_UNIT_NAME"

  systemctl daemon-reload
  # --no-block: the boot step waits for signing and a full Puppet run, far longer than user data
  # should take; its progress is in `journalctl -u compile-master-agent`.
  systemctl --no-block enable --now "$UNIT_NAME"
  log "compile-master-agent enabled and started"
  # The CRL refresher starts once the boot step is done (it is ordered after it). Restart, not
  # start: when this script runs again after a deploy, the running refresher must take up the new
  # bundle.
  systemctl enable "$CRL_UNIT_NAME"
  systemctl --no-block restart "$CRL_UNIT_NAME"
  log "compile-master-crl-refresh enabled and (re)started"
  # The readiness daemon answers "not ready" until the boot step has completed. Start, not
  # restart: restarting it on a node in service would drain it (the NLB takes it out for a minute
  # for a minute); it takes up a new bundle at the next boot.
  systemctl --no-block enable --now "$READINESS_UNIT_NAME"
  log "compile-master-readiness enabled and started"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi

import { generateKeyPair } from 'node:crypto';
import { promisify } from 'node:util';

/**
 * Puppet's default `keylength`. RSA because that is Puppet's default `key_type`, the one Puppet
 * Server 7's CA signs everywhere.
 */
export const RSA_KEY_BITS = 4096;

/**
 * A new private key for this node, made by the agent rather than by `puppet ssl submit_request`
 * so that its hash reaches the controller before any CSR for it reaches the CA. PKCS#1 PEM, as
 * Puppet writes its own keys (Ruby's RSA#to_pem); `submit_request` loads an existing key from
 * `<privatekeydir>/<certname>.pem` (OpenSSL::PKey.read) instead of generating one.
 */
export async function newPrivateKeyPem(): Promise<string> {
  const { privateKey } = await promisify(generateKeyPair)('rsa', {
    modulusLength: RSA_KEY_BITS,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
  });
  return privateKey;
}

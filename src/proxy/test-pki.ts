// Certificates for TLS tests, made by openssl in a temporary directory for each run: CAs, and leaf
// certificates they sign for servers (with SANs) and clients. Nothing here is committed or reused.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Pem {
  readonly cert: string;
  readonly key: string;
}

export interface TestPki {
  /** A self-signed CA. */
  ca(name: string): Pem;
  /** A leaf signed by `ca`; `san` like "DNS:a.example.test,IP:127.0.0.1". */
  leaf(ca: Pem, name: string, san: string): Pem;
  /** Self-signed leaf (its own CA). */
  selfSigned(name: string, san: string): Pem;
  /** Removes the directory. */
  remove(): void;
}

export function testPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-pki-"));
  let n = 0;
  const openssl = (args: string[]) => execFileSync("openssl", args, { stdio: "ignore", cwd: dir });
  const read = (f: string) => readFileSync(join(dir, f), "utf8");
  const ecKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  const selfSignedWith = (name: string, ext: string[]): Pem => {
    const id = `${n++}`;
    openssl([
      "req",
      "-x509",
      ...ecKey,
      "-days",
      "1",
      "-subj",
      `/CN=${name}`,
      ...ext,
      "-keyout",
      `${id}.key`,
      "-out",
      `${id}.crt`,
    ]);
    return { cert: read(`${id}.crt`), key: read(`${id}.key`) };
  };
  return {
    ca: (name) =>
      selfSignedWith(name, [
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
      ]),
    selfSigned: (name, san) => selfSignedWith(name, ["-addext", `subjectAltName=${san}`]),
    leaf: (ca, name, san) => {
      const id = `${n++}`;
      writeFileSync(join(dir, `${id}.ca.crt`), ca.cert);
      writeFileSync(join(dir, `${id}.ca.key`), ca.key, { mode: 0o600 });
      writeFileSync(
        join(dir, `${id}.ext`),
        `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n`,
      );
      openssl(["req", "-new", ...ecKey, "-subj", `/CN=${name}`, "-keyout", `${id}.key`, "-out", `${id}.csr`]);
      openssl([
        "x509",
        "-req",
        "-in",
        `${id}.csr`,
        "-CA",
        `${id}.ca.crt`,
        "-CAkey",
        `${id}.ca.key`,
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        `${id}.ext`,
        "-out",
        `${id}.crt`,
      ]);
      return { cert: read(`${id}.crt`), key: read(`${id}.key`) };
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

// The one hash function of the load balancers: MurmurHash3 x86_32 over the UTF-8 bytes of a string. Ring hash
// places its virtual nodes with it ("address:port_i"), Maglev derives each endpoint's offset and skip from it,
// and hash policies turn header / cookie / source IP / query parameter values into request hashes with it, so
// a value and a ring position live in the same 32-bit space. Allocation-free: the UTF-8 encoding goes into a
// module-level scratch buffer that only grows (once) for values longer than any seen before.

let scratch = new Uint8Array(1024);

/** Encodes `s` as UTF-8 into `scratch` (lone surrogates as U+FFFD, as TextEncoder does); returns the length. */
function encodeUtf8(s: string): number {
  const len = s.length;
  if (scratch.length < len * 3) scratch = new Uint8Array(Math.max(len * 3, scratch.length * 2));
  const out = scratch;
  let p = 0;
  for (let i = 0; i < len; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      out[p++] = c;
    } else if (c < 0x800) {
      out[p++] = 0xc0 | (c >> 6);
      out[p++] = 0x80 | (c & 0x3f);
    } else {
      if (c >= 0xd800 && c <= 0xdfff) {
        const next = i + 1 < len ? s.charCodeAt(i + 1) : 0;
        if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
          i++;
          out[p++] = 0xf0 | (c >> 18);
          out[p++] = 0x80 | ((c >> 12) & 0x3f);
          out[p++] = 0x80 | ((c >> 6) & 0x3f);
          out[p++] = 0x80 | (c & 0x3f);
          continue;
        }
        c = 0xfffd;
      }
      out[p++] = 0xe0 | (c >> 12);
      out[p++] = 0x80 | ((c >> 6) & 0x3f);
      out[p++] = 0x80 | (c & 0x3f);
    }
  }
  return p;
}

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

/** MurmurHash3 x86_32 of `bytes[0..len)`: an unsigned 32-bit integer. */
export function murmur3Bytes(bytes: Uint8Array, len: number, seed = 0): number {
  let h = seed | 0;
  const blocks = len & ~3;
  let i = 0;
  for (; i < blocks; i += 4) {
    let k = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = len & 3;
  if (tail !== 0) {
    let k = 0;
    if (tail === 3) k ^= bytes[i + 2]! << 16;
    if (tail >= 2) k ^= bytes[i + 1]! << 8;
    k ^= bytes[i]!;
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
  }
  h ^= len;
  return fmix32(h);
}

/** MurmurHash3 x86_32 of the UTF-8 encoding of `key`: an unsigned 32-bit integer. */
export function murmur3(key: string, seed = 0): number {
  const len = encodeUtf8(key);
  return murmur3Bytes(scratch, len, seed);
}

/** MurmurHash3's finalizer: a bijective avalanche of a 32-bit integer, returned unsigned. */
export function fmix32(x: number): number {
  let h = x | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Builds a kernel's uniform block: the WGSL struct declaration and its packed bytes from
 * one list of fields, so the two can never disagree. Arrays are stored as vec4<u32> (the
 * uniform address space needs 16-byte array strides); `at(name, i)` gives the WGSL
 * expression for element i.
 */
type Field =
  | { name: string; kind: 'u32' | 'i32' | 'f32'; value: number }
  | { name: string; kind: 'u32s'; values: readonly number[]; len: number };

export class Params {
  private fields: Field[] = [];

  u32(name: string, value: number): this {
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
      throw new RangeError(`uniform ${name}=${value} is not a u32`);
    }
    this.fields.push({ name, kind: 'u32', value });
    return this;
  }

  i32(name: string, value: number): this {
    this.fields.push({ name, kind: 'i32', value });
    return this;
  }

  f32(name: string, value: number): this {
    this.fields.push({ name, kind: 'f32', value });
    return this;
  }

  /** An array of u32 padded to a multiple of 4 (at least `minLen` entries). */
  u32s(name: string, values: readonly number[], minLen = 4): this {
    const len = Math.max(4, Math.ceil(Math.max(values.length, minLen) / 4) * 4);
    this.fields.push({ name, kind: 'u32s', values, len });
    return this;
  }

  static at(structVar: string, name: string, i: number): string {
    return `${structVar}.${name}[${i >> 2}][${i & 3}]`;
  }

  wgsl(structName = 'Params'): string {
    const lines = this.ordered().map((f) =>
      f.kind === 'u32s' ? `  ${f.name}: array<vec4<u32>, ${f.len / 4}>,` : `  ${f.name}: ${f.kind},`,
    );
    return `struct ${structName} {\n${lines.join('\n')}\n}`;
  }

  bytes(): Uint8Array {
    const ordered = this.ordered();
    let words = 0;
    for (const f of ordered) words += f.kind === 'u32s' ? f.len : 1;
    const data = new ArrayBuffer(Math.ceil((words * 4) / 16) * 16);
    const u = new Uint32Array(data);
    const i = new Int32Array(data);
    const fl = new Float32Array(data);
    let w = 0;
    for (const f of ordered) {
      if (f.kind === 'u32s') {
        f.values.forEach((v, k) => (u[w + k] = v));
        w += f.len;
      } else {
        if (f.kind === 'u32') u[w] = f.value;
        else if (f.kind === 'i32') i[w] = f.value;
        else fl[w] = f.value;
        w++;
      }
    }
    return new Uint8Array(data);
  }

  get empty(): boolean {
    return this.fields.length === 0;
  }

  /** Arrays first, so each vec4 array starts 16-byte aligned without padding fields. */
  private ordered(): Field[] {
    return [...this.fields.filter((f) => f.kind === 'u32s'), ...this.fields.filter((f) => f.kind !== 'u32s')];
  }
}

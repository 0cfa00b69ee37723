/**
 * A cache bounded by bytes rather than entries: the least recently used entries are evicted
 * once the sizes added up pass the limit, so memory is set by the limit, not by the data set.
 * A Map keeps insertion order, so re-inserting on every hit makes its first key the least
 * recently used one.
 */
export class ByteLru<K, V> {
  private readonly map = new Map<K, { value: V; bytes: number }>();
  /** Bytes held now. */
  bytes = 0;
  hits = 0;
  misses = 0;
  evictions = 0;

  constructor(private limit: number, private readonly onEvict?: (key: K, value: V) => void) {
    if (!(limit >= 0)) throw new RangeError(`cache limit must be a number of bytes >= 0, got ${limit}`);
  }

  get limitBytes(): number {
    return this.limit;
  }

  /** A new limit; a lower one evicts at once. */
  set limitBytes(bytes: number) {
    if (!(bytes >= 0)) throw new RangeError(`cache limit must be a number of bytes >= 0, got ${bytes}`);
    this.limit = bytes;
    this.shrink();
  }

  get size(): number {
    return this.map.size;
  }

  get(key: K): V | undefined {
    const e = this.map.get(key);
    if (!e) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.map.delete(key);
    this.map.set(key, e);
    return e.value;
  }

  has(key: K): boolean {
    return this.map.has(key);
  }

  /** Keeps `value` unless it alone is over the limit; evicts the oldest entries to fit it. */
  set(key: K, value: V, bytes: number): boolean {
    this.delete(key);
    if (bytes > this.limit) return false;
    this.map.set(key, { value, bytes });
    this.bytes += bytes;
    this.shrink();
    return true;
  }

  private shrink(): void {
    for (const [k, e] of this.map) {
      if (this.bytes <= this.limit) break;
      this.map.delete(k);
      this.bytes -= e.bytes;
      this.evictions++;
      this.onEvict?.(k, e.value);
    }
  }

  delete(key: K): void {
    const e = this.map.get(key);
    if (!e) return;
    this.map.delete(key);
    this.bytes -= e.bytes;
  }

  clear(): void {
    this.map.clear();
    this.bytes = 0;
  }
}

/** The autotune store in the browser: IndexedDB database "tl-autotune", one record of
 * entries per adapter key. */
import type { TuneEntry, TuneStore } from './tune.js';

const DB = 'tl-autotune';
const STORE = 'choices';

function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error ?? new Error(`IndexedDB ${DB}: request failed`));
  });
}

function open(): Promise<IDBDatabase> {
  const r = indexedDB.open(DB, 1);
  r.onupgradeneeded = () => r.result.createObjectStore(STORE);
  return request(r);
}

export const browserTuneStore: TuneStore = {
  location: `IndexedDB "${DB}"`,
  async load(adapter) {
    // Workers without IndexedDB, or storage the user blocked: nothing stored.
    if (typeof indexedDB === 'undefined') return {};
    const db = await open();
    try {
      const got = await request(db.transaction(STORE, 'readonly').objectStore(STORE).get(adapter));
      return (got as Record<string, TuneEntry> | undefined) ?? {};
    } finally {
      db.close();
    }
  },
  async save(adapter, entries) {
    if (typeof indexedDB === 'undefined') return;
    const db = await open();
    try {
      const store = db.transaction(STORE, 'readwrite').objectStore(STORE);
      const old = ((await request(store.get(adapter))) as Record<string, TuneEntry> | undefined) ?? {};
      await request(store.put({ ...old, ...entries }, adapter));
    } finally {
      db.close();
    }
  },
};

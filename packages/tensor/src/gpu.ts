// The shipped declarations name WebGPU's types (GPUDevice …): a consumer's compiler gets them from here.
/// <reference types="@webgpu/types" preserve="true" />
/**
 * Where a GPUDevice comes from. The Node entry registers Dawn (npm `webgpu`), the browser
 * entry registers `navigator.gpu`; the rest of the package only sees this interface, so a
 * browser bundle never imports Node code.
 */
export interface GpuProvider {
  readonly name: string;
  gpu(): GPU | undefined | Promise<GPU | undefined>;
  /** Why no adapter was found on this platform and what to install. */
  noAdapterHelp(): string;
  /** Adapter options to try in order (e.g. core first, then compatibility). */
  adapterOptions?: GPURequestAdapterOptions[];
}

let provider: GpuProvider | undefined;

export function registerGpuProvider(p: GpuProvider): void {
  provider = p;
}

export function gpuProvider(): GpuProvider {
  if (!provider) {
    throw new Error(
      '@tl/tensor: no WebGPU provider registered. Import "@tl/tensor" through its "node" or ' +
        '"browser" entry (package.json conditional exports pick it), not a file inside the package.',
    );
  }
  return provider;
}

export interface AcquiredDevice {
  adapter: GPUAdapter;
  device: GPUDevice;
  /** The object the provider returned; kept alive as long as the device (Dawn needs it). */
  gpu: GPU;
}

/** Requests an adapter and a device with the adapter's own limits (the defaults are too small). */
export async function acquireDevice(): Promise<AcquiredDevice> {
  const p = gpuProvider();
  const gpu = await p.gpu();
  if (!gpu) throw new Error(`WebGPU is not available (${p.name}). ${p.noAdapterHelp()}`);
  // The first adapter that is not a software fallback (Chrome answers a core request with
  // SwiftShader where only a compatibility adapter is hardware-backed); else the fallback.
  let adapter: GPUAdapter | null = null;
  let fallback: GPUAdapter | null = null;
  for (const options of p.adapterOptions ?? [{ powerPreference: 'high-performance' }]) {
    const a = await gpu.requestAdapter(options);
    if (a && !(a.info as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter) {
      adapter = a;
      break;
    }
    fallback ??= a;
  }
  adapter ??= fallback;
  if (!adapter) throw new Error(`No WebGPU adapter was found (${p.name}). ${p.noAdapterHelp()}`);
  const requiredLimits: Record<string, number> = {};
  const limits = adapter.limits as unknown as Record<string, number>;
  for (const key of LIMITS_TO_RAISE) {
    const v = limits[key];
    if (typeof v === 'number') requiredLimits[key] = v;
  }
  const requiredFeatures: GPUFeatureName[] = [];
  for (const f of ['shader-f16', 'subgroups', 'timestamp-query'] as const) {
    if (adapter.features.has(f)) requiredFeatures.push(f as GPUFeatureName);
  }
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  return { adapter, device, gpu };
}

const LIMITS_TO_RAISE = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxUniformBufferBindingSize',
  'maxBindGroups',
];

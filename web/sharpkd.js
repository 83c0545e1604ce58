// sharpkd in the browser: sharpen a call's video where it is decoded, in the receiver's page.
//
//   import { Sharpener } from "/web/sharpkd.js";
//   const sharpener = await Sharpener.load();  // or { model: "/web/model/student.onnx" }
//   const live = sharpener.attach(remoteVideo, canvas, { receiver: pc.getReceivers().find((r) => r.track.kind === "video") });
//   live.onstats = (s) => console.log(s.fps, s.ms, s.stream);
//
// The model (kd.export.export_onnx_web) takes a canvas's RGBA bytes and the stream vector and returns RGBA bytes:
// padding, the net and rounding all run inside ONNX Runtime Web (WebGPU where the browser has it, else WASM with
// SIMD, and threads when the page is cross-origin isolated). What the receiver knows of each frame (how much the
// sender shrank it, the codec and its quantiser) comes from RTCRtpReceiver.getStats() and tells the net the stream.

const HERE = new URL(".", import.meta.url);
export const VIDEO_QP_MAX = { h264: 51, h265: 51, vp8: 127 }; // kd.degrade.VIDEO_QP_MAX
export const STREAM_FEATURES = 7; // the stream vector this module computes: kd.degrade.stream_condition, version 2

/** The codec name kd.degrade.Received uses for an RTP mime type ("video/VP8" -> "vp8"); null for one it does not know. */
export function codecOf(mimeType) {
  const name = String(mimeType || "").split("/").pop().toLowerCase();
  return name in VIDEO_QP_MAX ? name : null;
}

/**
 * The stream vector for a decoded frame of call video: kd.degrade.stream_condition(kd.degrade.Received(scale, codec, qp)).
 * [scale known, log2(scale)/2, codec and quantiser known, 0 (JPEG), H.264/H.265 QP/51, VP8 q index/127, call video].
 * scale: displayed width / decoded width (1..8) or null; codec: "vp8" | "h264" | "h265" or null; qp: the codec's
 * quantiser (mean over recent frames) or null. Throws on values kd.degrade.Received refuses.
 */
export function streamVector({ scale = null, codec = null, qp = null } = {}) {
  if (scale != null && !(scale >= 1 && scale <= 8)) throw new RangeError(`a stream's scale must be in [1, 8], got ${scale}`);
  if (codec != null && !(codec in VIDEO_QP_MAX)) throw new RangeError(`a call's codec must be one of ${Object.keys(VIDEO_QP_MAX)}, got ${codec}`);
  if (qp != null && !(qp >= 0 && qp <= (VIDEO_QP_MAX[codec] ?? -1))) throw new RangeError(`quantiser ${qp} out of range for codec ${codec}`);
  const v = new Float32Array(STREAM_FEATURES);
  if (scale != null) { v[0] = 1; v[1] = Math.log2(scale) / 2; }
  if (codec != null && qp != null) { v[2] = 1; v[codec === "vp8" ? 5 : 4] = qp / VIDEO_QP_MAX[codec]; }
  v[6] = codec != null ? 1 : 0;
  return v;
}

/** Loads ONNX Runtime Web: the locally installed copy (web/node_modules, `npm ci --prefix web`) or else the pinned CDN copy. */
async function loadRuntime(runtime, webgpu) {
  let base = runtime;
  let note = "";
  if (!base) {
    const info = await (await fetch(new URL("runtime.json", HERE))).json();
    base = info.local ? new URL(info.path, HERE).href : info.cdn;
    if (!info.local) note = `ONNX Runtime Web is not installed on this server (${info.install}); loaded from ${info.cdn}`;
  }
  base = String(base).endsWith("/") ? String(base) : `${base}/`;
  const ort = await import(`${base}${webgpu ? "ort.webgpu.min.mjs" : "ort.wasm.min.mjs"}`);
  ort.env.wasm.wasmPaths = base;
  return { ort, base, note };
}

async function hasWebGPU() {
  try {
    return Boolean(navigator.gpu && (await navigator.gpu.requestAdapter()));
  } catch {
    return false;
  }
}

/** The student in this page: one ONNX Runtime Web session. */
export class Sharpener {
  /**
   * model: URL of the exported .onnx (default: the full student on WebGPU, the light one on WASM, where the full one
   * runs ~14 fps at 360p on one core of a 2-core laptop); backend: "auto" (WebGPU if available, else WASM), "webgpu" or "wasm";
   * threads: WASM threads (default: all cores when the page is cross-origin isolated, else 1);
   * runtime: URL of onnxruntime-web's dist/ folder (default: ask the server that served this module).
   */
  static async load({ model = null, backend = "auto", threads = null, runtime = null } = {}) {
    if (!["auto", "webgpu", "wasm"].includes(backend)) throw new RangeError(`backend must be auto, webgpu or wasm, got ${backend}`);
    const webgpu = backend === "webgpu" || (backend === "auto" && (await hasWebGPU()));
    if (backend === "webgpu" && !webgpu) throw new Error("this browser has no WebGPU adapter");
    model ??= new URL(`model/${webgpu ? "student" : "student_lite"}.onnx`, HERE).href;
    const { ort, base, note } = await loadRuntime(runtime, webgpu);
    const isolated = globalThis.crossOriginIsolated === true;
    ort.env.wasm.numThreads = threads ?? (isolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1);
    ort.env.wasm.simd = true;
    const response = await fetch(model);
    if (!response.ok) throw new Error(`could not fetch the model ${model}: HTTP ${response.status}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const info = { backend: webgpu ? "webgpu" : "wasm", threads: ort.env.wasm.numThreads, runtime: base, note, isolated, model };
    let sharpener = new Sharpener(ort, await ort.InferenceSession.create(bytes, { executionProviders: webgpu ? ["webgpu", "wasm"] : ["wasm"] }), info);
    if (webgpu && backend === "auto") { // a GPU may refuse a shader (too few buffers, lost device): then WASM
      try {
        await sharpener.sharpen(new ImageData(32, 32));
      } catch (e) {
        await sharpener.session.release();
        info.note = `WebGPU failed (${e.message || e}); running on WASM`;
        info.backend = "wasm";
        sharpener = new Sharpener(ort, await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] }), info);
      }
    }
    return sharpener;
  }

  constructor(ort, session, info) {
    this.ort = ort;
    this.session = session;
    this.info = info;
    const stream = (session.inputMetadata || []).find((m) => m.name === "stream");
    this.features = stream && stream.shape && Number.isInteger(stream.shape[1]) ? stream.shape[1] : STREAM_FEATURES;
    if (this.features !== STREAM_FEATURES) {
      throw new Error(`the model reads ${this.features} stream features; this module computes ${STREAM_FEATURES} (stream v2)`);
    }
  }

  /** Sharpen one frame: ImageData in, a new ImageData of the same size out. stream: a vector (streamVector) or null (not told). */
  async sharpen(image, stream = null) {
    if (!(image && image.width >= 16 && image.height >= 16 && image.data)) throw new RangeError("sharpen() takes an ImageData of at least 16×16 px");
    const vector = stream ?? new Float32Array(this.features);
    if (vector.length !== this.features) throw new RangeError(`the stream vector must have ${this.features} numbers, got ${vector.length}`);
    const rgba = new this.ort.Tensor("uint8", new Uint8Array(image.data.buffer, image.data.byteOffset, image.data.length), [image.height, image.width, 4]);
    const told = new this.ort.Tensor("float32", Float32Array.from(vector), [1, this.features]);
    const { sharpened } = await this.session.run({ rgba, stream: told });
    const out = new ImageData(new Uint8ClampedArray(sharpened.data.buffer, sharpened.data.byteOffset, sharpened.data.length), image.width, image.height);
    return out;
  }

  /**
   * Sharpen a playing <video> (or a remote video MediaStreamTrack) into a canvas, frame by frame (requestVideoFrameCallback; a frame that arrives while
   * the last one is still being sharpened is skipped, so the picture never lags). The canvas keeps its size: the
   * decoded frame is scaled to it first, as a receiver scales it to its window, and that ratio is the stream's scale.
   * receiver: the RTCRtpReceiver of the video, to be told its codec and quantiser from getStats() (optional).
   * Returns a LiveSharpening; its onstats gets { fps, ms, frames, decoded, displayed, codec, qp, stream } each second.
   */
  attach(video, canvas, { receiver = null, wipe = null } = {}) {
    if (typeof MediaStreamTrack !== "undefined" && video instanceof MediaStreamTrack) video = playing(video);
    if (!(video instanceof HTMLVideoElement)) throw new TypeError("attach() takes a <video> or a video MediaStreamTrack");
    if (!(canvas instanceof HTMLCanvasElement)) throw new TypeError("attach() draws into a <canvas>");
    return new LiveSharpening(this, video, canvas, receiver, wipe);
  }
}

/** A hidden, muted <video> playing a track (a remote track given to attach() instead of its element). */
function playing(track) {
  if (track.kind !== "video") throw new TypeError(`attach() needs a video track, got ${track.kind}`);
  const video = document.createElement("video");
  Object.assign(video, { muted: true, playsInline: true, autoplay: true, srcObject: new MediaStream([track]) });
  video.play().catch(() => {});
  return video;
}

/** What getStats() tells a receiver about its video, measured over the interval since the previous call. */
export class ReceiverStats {
  constructor(receiver) {
    this.receiver = receiver;
    this.last = null;
  }

  /** { codec, qp (mean over the interval), decoded: [w, h], bitrate (bit/s), framesDecoded } or null before any frame. */
  async read() {
    const report = await this.receiver.getStats();
    let inbound = null;
    const codecs = new Map();
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") inbound = s;
      if (s.type === "codec") codecs.set(s.id, s);
    });
    if (!inbound || !inbound.framesDecoded) return null;
    const now = { t: inbound.timestamp, qpSum: inbound.qpSum, frames: inbound.framesDecoded, bytes: inbound.bytesReceived };
    const prev = this.last;
    this.last = now;
    const frames = prev ? now.frames - prev.frames : 0;
    const qp = now.qpSum == null ? null : frames > 0 ? (now.qpSum - prev.qpSum) / frames : prev ? null : now.qpSum / now.frames;
    return {
      codec: codecOf(codecs.get(inbound.codecId)?.mimeType),
      mimeType: codecs.get(inbound.codecId)?.mimeType || null,
      qp,
      decoded: [inbound.frameWidth || 0, inbound.frameHeight || 0],
      bitrate: prev && now.t > prev.t ? ((now.bytes - prev.bytes) * 8 * 1000) / (now.t - prev.t) : null,
      framesDecoded: now.frames,
    };
  }
}

/** A video sharpened into a canvas; see Sharpener.attach. */
export class LiveSharpening {
  constructor(sharpener, video, canvas, receiver, wipe) {
    this.sharpener = sharpener;
    this.video = video;
    this.canvas = canvas;
    this.wipe = wipe; // null: the sharpened frame; a number 0..1: received left of it, sharpened right of it
    this.stats = receiver ? new ReceiverStats(receiver) : null;
    this.known = { codec: null, qp: null, bitrate: null, decoded: null };
    this.work = document.createElement("canvas");
    this.workCtx = this.work.getContext("2d", { willReadFrequently: true });
    this.ctx = canvas.getContext("2d");
    this.frames = 0;
    this.times = []; // when frames were shown (fps over the last ~2 s)
    this.ms = []; // per frame: draw + read + sharpen + show
    this.busy = false;
    this.running = true;
    this.last = null; // { input, output, received, stream } of the newest frame (to inspect or test)
    this.onstats = null;
    this.onframe = null;
    this.timer = setInterval(() => this.poll(), 1000);
    this.poll();
    this.schedule();
  }

  schedule() {
    if (!this.running) return;
    if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) this.video.requestVideoFrameCallback(() => this.frame());
    else requestAnimationFrame(() => this.frame());
  }

  async poll() {
    if (this.stats) {
      try {
        const s = await this.stats.read();
        if (s) this.known = s;
      } catch (e) {
        this.known.error = String(e);
      }
    }
    if (this.onstats) this.onstats(this.summary());
  }

  /** What this frame's receiver knows: the scale from the decoded and displayed sizes, codec and quantiser from getStats. */
  received() {
    const decodedW = this.video.videoWidth;
    const scale = decodedW ? Math.min(8, Math.max(1, this.canvas.width / decodedW)) : null;
    const { codec, qp } = this.known;
    const max = VIDEO_QP_MAX[codec];
    return { scale, codec, qp: codec && qp != null ? Math.min(max, Math.max(0, qp)) : null };
  }

  async frame() {
    const v = this.video;
    if (!this.running) return;
    if (this.busy || !v.videoWidth) { this.schedule(); return; }
    this.busy = true;
    this.schedule();
    try {
      const t0 = performance.now();
      const { width: w, height: h } = this.canvas;
      if (this.work.width !== w || this.work.height !== h) { this.work.width = w; this.work.height = h; }
      this.workCtx.imageSmoothingQuality = "high";
      this.workCtx.drawImage(v, 0, 0, w, h); // the receiver scales the decoded frame to its window
      const input = this.workCtx.getImageData(0, 0, w, h);
      const received = this.received();
      const stream = streamVector(received);
      const output = this.wipe != null && this.wipe >= 1 ? input : await this.sharpener.sharpen(input, stream); // all received: no net
      if (!this.running) return;
      this.ctx.putImageData(output, 0, 0);
      if (this.wipe != null) {
        const x = Math.round(Math.min(1, Math.max(0, this.wipe)) * w);
        if (x > 0) this.ctx.putImageData(input, 0, 0, 0, 0, x, h);
        if (x > 0 && x < w) { this.ctx.fillStyle = "rgba(255, 255, 255, 0.8)"; this.ctx.fillRect(x - 1, 0, 2, h); }
      }
      const now = performance.now();
      this.frames += 1;
      this.times.push(now);
      while (this.times.length && now - this.times[0] > 2000) this.times.shift();
      this.ms.push(now - t0);
      if (this.ms.length > 30) this.ms.shift();
      this.last = { input, output, received, stream };
      if (this.onframe) this.onframe(this.last);
    } finally {
      this.busy = false;
    }
  }

  /** fps (over the last ~2 s), median ms per frame, and what the receiver knows. */
  summary() {
    const t = this.times;
    const fps = t.length > 1 ? ((t.length - 1) * 1000) / (t[t.length - 1] - t[0]) : 0;
    const sorted = [...this.ms].sort((a, b) => a - b);
    const ms = sorted.length ? sorted[Math.floor(sorted.length / 2)] : null;
    const received = this.received();
    return {
      fps, ms, frames: this.frames, backend: this.sharpener.info.backend, threads: this.sharpener.info.threads,
      decoded: [this.video.videoWidth, this.video.videoHeight], displayed: [this.canvas.width, this.canvas.height],
      codec: this.known.codec, mimeType: this.known.mimeType || null, qp: this.known.qp, bitrate: this.known.bitrate,
      received, stream: Array.from(streamVector(received)),
    };
  }

  stop() {
    this.running = false;
    clearInterval(this.timer);
  }
}

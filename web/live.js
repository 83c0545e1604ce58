// The Live page: a call with itself (two RTCPeerConnections in one page), its received video sharpened by sharpkd.js.
// The sender is capped at the chosen bitrate and libwebrtc scales its resolution down as a real sender does.
import { Sharpener } from "./sharpkd.js";

const $ = (id) => document.getElementById(id);
const state = { send: null, recv: null, camera: null, live: null, sharpener: null };
window.sharpkdLive = state; // for inspection (and the tests)

function codecsFor(name) {
  const caps = RTCRtpReceiver.getCapabilities("video");
  const mime = name === "h264" ? "video/h264" : "video/vp8";
  const chosen = caps.codecs.filter((c) => c.mimeType.toLowerCase() === mime);
  if (!chosen.length) throw new Error(`this browser cannot receive ${name.toUpperCase()}`);
  return chosen;
}

async function applyBitrate() {
  const kbps = Number($("bitrate").value);
  $("bitrate-value").textContent = kbps;
  const sender = state.send && state.send.getSenders().find((s) => s.track && s.track.kind === "video");
  if (!sender) return;
  const params = sender.getParameters();
  if (!params.encodings || !params.encodings.length) params.encodings = [{}];
  params.encodings[0].maxBitrate = kbps * 1000;
  params.degradationPreference = "maintain-framerate"; // drop resolution, not frames, as calls do
  await sender.setParameters(params);
}

async function connect() {
  const send = new RTCPeerConnection();
  const recv = new RTCPeerConnection();
  state.send = send;
  state.recv = recv;
  send.onicecandidate = (e) => e.candidate && recv.addIceCandidate(e.candidate);
  recv.onicecandidate = (e) => e.candidate && send.addIceCandidate(e.candidate);
  const got = new Promise((resolve) => { recv.ontrack = (e) => resolve(e); });
  const track = state.camera.getVideoTracks()[0];
  track.contentHint = "motion";
  // capped from the first frame: libwebrtc then starts at the resolution the bitrate allows, as a sender on a poor link does
  const transceiver = send.addTransceiver(track, { direction: "sendonly", streams: [state.camera],
    sendEncodings: [{ maxBitrate: Number($("bitrate").value) * 1000 }] });
  transceiver.setCodecPreferences(codecsFor($("codec").value));
  await send.setLocalDescription(await send.createOffer());
  await recv.setRemoteDescription(send.localDescription);
  await recv.setLocalDescription(await recv.createAnswer());
  await send.setRemoteDescription(recv.localDescription);
  const event = await got;
  $("remote").srcObject = new MediaStream([event.track]);
  await $("remote").play().catch(() => {});
  await applyBitrate();
  return event.receiver;
}

function show(s) {
  const el = $("stats");
  const mbit = s.bitrate == null ? "–" : `${(s.bitrate / 1000).toFixed(0)} kbit/s`;
  const qp = s.qp == null ? "–" : s.qp.toFixed(1);
  const ms = s.ms == null ? "–" : `${s.ms.toFixed(1)} ms/frame`;
  const codec = (s.codec || s.mimeType || "?").toUpperCase();
  el.textContent = `${s.fps.toFixed(1)} fps sharpened · ${ms} (${state.model}, ${s.backend}${s.backend === "wasm" ? `, ${s.threads} thread${s.threads > 1 ? "s" : ""}` : ""}) · ` +
    `received ${s.decoded[0]}×${s.decoded[1]} → shown ${s.displayed[0]}×${s.displayed[1]} (÷${s.received.scale ? s.received.scale.toFixed(2) : "?"}) · ` +
    `${codec} QP ${qp} · ${mbit} · frame ${s.frames}`;
  Object.assign(el.dataset, { model: state.model, frames: s.frames, fps: s.fps.toFixed(2), backend: s.backend, codec: s.codec || "",
    decoded: s.decoded.join("x"), qp: s.qp == null ? "" : s.qp.toFixed(2) });
}

async function start() {
  $("error").textContent = "";
  $("start").disabled = true;
  $("net").disabled = true; // a net is chosen per call: stop to change it
  try {
    const [w, h] = $("size").value.split("x").map(Number);
    state.camera = await navigator.mediaDevices.getUserMedia({ video: { width: w, height: h }, audio: false });
    $("local").srcObject = state.camera;
    const settings = state.camera.getVideoTracks()[0].getSettings();
    $("view").width = settings.width || w; // shown at the camera's size: the size the sender meant
    $("view").height = settings.height || h;
    const net = $("net").value;
    if (!state.sharpener || state.net !== net) {
      $("note").textContent = `loading the ${net} net…`;
      state.sharpener = await Sharpener.load({ model: net === "auto" ? null : `model/${net}.onnx` });
      state.net = net;
      state.model = state.sharpener.info.model.split("/").pop().replace(/\.onnx$/, ""); // the net that was loaded
      $("note").textContent = state.sharpener.info.note || (state.sharpener.info.isolated ? "" :
        "this page is not cross-origin isolated (opened in a frame?): WASM runs one thread; open it on its own for more");
    }
    const receiver = await connect();
    state.live = state.sharpener.attach($("remote"), $("view"), { receiver, wipe: Number($("wipe").value) });
    state.live.onstats = show;
    $("stop").disabled = false;
  } catch (err) {
    $("error").textContent = `Could not start: ${err.message || err}`;
    stop();
  }
}

function stop() {
  if (state.live) state.live.stop();
  for (const pc of [state.send, state.recv]) if (pc) pc.close();
  if (state.camera) state.camera.getTracks().forEach((t) => t.stop());
  Object.assign(state, { send: null, recv: null, camera: null, live: null });
  $("start").disabled = false;
  $("net").disabled = false;
  $("stop").disabled = true;
}

async function restart() { if (state.live) { stop(); await start(); } }

$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
$("bitrate").addEventListener("input", () => applyBitrate().catch((e) => { $("error").textContent = String(e); }));
$("codec").addEventListener("change", restart);
$("size").addEventListener("change", restart);
$("wipe").addEventListener("input", () => { if (state.live) state.live.wipe = $("sharpen").checked ? Number($("wipe").value) : 1; });
$("sharpen").addEventListener("change", () => { if (state.live) state.live.wipe = $("sharpen").checked ? Number($("wipe").value) : 1; });

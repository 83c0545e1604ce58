// Send the camera to the server over WebRTC and show what comes back (see kd/live.py).
let pc = null, channel = null;
const $ = (id) => document.getElementById(id);

function settings() {
  return {
    mode: document.querySelector("input[name=mode]:checked").value,
    preset: $("preset").value, size: $("size").value, model: $("model").value,
  };
}

function showStats(s) {
  if (s.error) { $("error").textContent = s.error; return; }
  const ms = s.model_ms == null ? "no model (degraded only)" : `${s.model} ${s.model_ms.toFixed(1)} ms/frame`;
  $("stats").textContent = `${s.fps.toFixed(1)} fps · ${ms} · ${s.size} · ${s.preset} · ${s.mode} · frame ${s.frames}`;
  $("stats").dataset.frames = s.frames;
  $("stats").dataset.mode = s.mode;
  $("stats").dataset.preset = s.preset;
}

function waitForIce(conn) {  // aiortc takes the candidates in the offer, so gather them all first
  if (conn.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => { if (conn.iceGatheringState === "complete") { conn.removeEventListener("icegatheringstatechange", check); resolve(); } };
    conn.addEventListener("icegatheringstatechange", check);
  });
}

async function start() {
  $("error").textContent = "";
  $("start").disabled = true;
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: false });
    $("local").srcObject = stream;
    pc = new RTCPeerConnection();
    pc.addEventListener("track", (e) => { $("remote").srcObject = e.streams[0] || new MediaStream([e.track]); });
    pc.addEventListener("connectionstatechange", () => {
      if (pc && pc.connectionState === "failed") $("error").textContent = "connection failed";
    });
    channel = pc.createDataChannel("control");
    channel.onmessage = (e) => showStats(JSON.parse(e.data));
    stream.getTracks().forEach((t) => pc.addTrack(t, stream));
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIce(pc);
    const res = await fetch("offer", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type, ...settings() }),
    });
    const answer = await res.json();
    if (!res.ok) throw new Error(answer.error || res.statusText);
    await pc.setRemoteDescription(answer);
    $("stop").disabled = false;
    $("stats").textContent = "connecting…";
  } catch (err) {
    $("error").textContent = `Could not start: ${err.message || err}`;
    stop();
  }
}

function stop() {
  if (pc) {
    pc.getSenders().forEach((s) => s.track && s.track.stop());
    pc.close();
  }
  pc = null; channel = null;
  $("start").disabled = false;
  $("stop").disabled = true;
}

function send() { if (channel && channel.readyState === "open") channel.send(JSON.stringify(settings())); }

$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
document.querySelectorAll("input[name=mode]").forEach((r) => r.addEventListener("change", send));
["preset", "size", "model"].forEach((id) => $(id).addEventListener("change", send));

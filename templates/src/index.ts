// The room-composite page: joins as the hidden recorder, tiles every subscribed camera and
// screen share in the requested layout, plays all audio, and signals START_RECORDING once
// media is flowing.
//
// Layouts: `grid`, `speaker` (the active speaker large, up to three others beside it) and
// `single-speaker` (only the active speaker), each with a `-light` variant (`grid-light`,
// `speaker-light`, `single-speaker-light`) on a white background instead of a dark one. Other
// names are read by prefix, as the Go egress's default template reads them: `speaker…`,
// `single-speaker…`, anything else (empty too) a grid; a `-light` suffix is the light theme.
// A grid turns into speaker while someone shares a screen.
//
// Landscape cameras fill their tile; portrait cameras and screen shares are shown whole, on
// the theme's background (as the Go template's components do), so the theme shows around a
// portrait speaker even in single-speaker.

import {
  ConnectionState,
  RemoteParticipant,
  RemoteTrack,
  RemoteTrackPublication,
  Room,
  RoomEvent,
  Track,
} from 'livekit-client';

import { egress } from './egress';

/** Without video, start this long after the first subscription (a video may still come). */
const AUDIO_ONLY_START_MS = 500;
/** With video that never decodes, start anyway after this long. */
const FRAME_DECODE_TIMEOUT_MS = 5000;

const root = document.getElementById('root') as HTMLDivElement;
const audioRoot = document.getElementById('audio') as HTMLDivElement;

function showError(message: string): void {
  root.replaceChildren();
  const div = document.createElement('div');
  div.className = 'error';
  div.textContent = message;
  root.appendChild(div);
}

interface TileSource {
  key: string;
  participant: RemoteParticipant;
  track: RemoteTrack;
  screen: boolean;
}

/** One <video> per track, reused across re-layouts so playback never restarts. */
const videos = new Map<string, HTMLVideoElement>();
const audios = new Map<string, HTMLMediaElement>();

function videoFor(src: TileSource): HTMLVideoElement {
  let v = videos.get(src.key);
  if (!v) {
    v = src.track.attach() as HTMLVideoElement;
    v.muted = true;
    v.autoplay = true;
    v.playsInline = true;
    watchOrientation(v);
    watchFirstFrame(v);
    videos.set(src.key, v);
  }
  return v;
}

/** Marks the element `data-orientation="portrait"` or `"landscape"` (style.css fits by it);
 *  `resize` fires whenever the publisher's resolution changes. */
function watchOrientation(v: HTMLVideoElement): void {
  const update = () => {
    if (v.videoWidth > 0 && v.videoHeight > 0) {
      v.dataset.orientation = v.videoHeight > v.videoWidth ? 'portrait' : 'landscape';
    }
  };
  v.addEventListener('loadedmetadata', update);
  v.addEventListener('resize', update);
}

/** START_RECORDING as soon as a video frame has actually been presented. */
function watchFirstFrame(v: HTMLVideoElement): void {
  if (egress.started) return;
  const rvfc = (v as HTMLVideoElement & { requestVideoFrameCallback?: (cb: () => void) => number })
    .requestVideoFrameCallback;
  if (rvfc) {
    rvfc.call(v, () => egress.startRecording());
  } else {
    v.addEventListener('playing', () => egress.startRecording(), { once: true });
  }
}

function tracks(room: Room): TileSource[] {
  const out: TileSource[] = [];
  for (const p of room.remoteParticipants.values()) {
    for (const pub of p.trackPublications.values()) {
      const t = pub.track;
      if (!pub.isSubscribed || !t || pub.kind !== Track.Kind.Video) continue;
      if (![Track.Source.Camera, Track.Source.ScreenShare, Track.Source.Unknown].includes(pub.source)) continue;
      out.push({ key: `${p.identity}/${pub.trackSid}`, participant: p, track: t, screen: pub.source === Track.Source.ScreenShare });
    }
  }
  // Screen shares first, then active speakers, then the order people joined.
  const speakers = room.activeSpeakers.map((s) => s.identity);
  const rank = (s: TileSource) => {
    const i = speakers.indexOf(s.participant.identity);
    return (s.screen ? 0 : 1_000_000) + (i >= 0 ? i : 1000 + (s.participant.joinedAt?.getTime() ?? 0) / 1e10);
  };
  return out.sort((a, b) => rank(a) - rank(b));
}

function tile(src: TileSource): HTMLDivElement {
  const div = document.createElement('div');
  div.className = src.screen ? 'tile screen' : 'tile';
  div.appendChild(videoFor(src));
  const name = document.createElement('div');
  name.className = 'name';
  name.textContent = src.participant.name || src.participant.identity;
  div.appendChild(name);
  return div;
}

/** Gap between tiles, px (matches style.css). */
const GAP = 8;
/** Tiles keep the usual camera aspect, so little of any video is cropped. */
const TILE_ASPECT = 16 / 9;

/** The column count that makes n 16:9 tiles largest in a w×h box, and the tile size. */
function gridShape(n: number, w: number, h: number): { cols: number; rows: number; tw: number; th: number } {
  let best = { cols: 1, rows: n, tw: 0, th: 0 };
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    const maxW = (w - GAP * (cols + 1)) / cols;
    const maxH = (h - GAP * (rows + 1)) / rows;
    const tw = Math.floor(Math.min(maxW, maxH * TILE_ASPECT));
    if (tw > best.tw) best = { cols, rows, tw, th: Math.floor(tw / TILE_ASPECT) };
  }
  return best;
}

function renderGrid(list: TileSource[]): HTMLElement {
  const grid = document.createElement('div');
  if (list.length <= 1) {
    // One participant fills the frame.
    grid.className = 'grid single';
  } else {
    grid.className = 'grid';
    const { cols, rows, tw, th } = gridShape(list.length, window.innerWidth, window.innerHeight);
    grid.style.gridTemplateColumns = `repeat(${cols}, ${tw}px)`;
    grid.style.gridTemplateRows = `repeat(${rows}, ${th}px)`;
  }
  list.forEach((s) => grid.appendChild(tile(s)));
  return grid;
}

function renderSpeaker(list: TileSource[]): HTMLElement {
  const div = document.createElement('div');
  const [main, ...others] = list;
  if (!main) return div;
  if (others.length === 0) {
    div.className = 'speaker solo';
    div.appendChild(tile(main));
    return div;
  }
  div.className = 'speaker';
  const carousel = document.createElement('div');
  carousel.className = 'carousel';
  others.slice(0, 3).forEach((s) => carousel.appendChild(tile(s)));
  div.appendChild(carousel);
  div.appendChild(tile(main));
  return div;
}

function renderSingle(list: TileSource[]): HTMLElement {
  const div = document.createElement('div');
  div.className = 'speaker solo';
  if (list[0]) div.appendChild(tile(list[0]));
  return div;
}

function render(room: Room): void {
  if (room.state === ConnectionState.Disconnected) return;
  const layout = egress.layout();
  root.className = layout.endsWith('-light') ? 'room light' : 'room dark';
  const list = tracks(room);
  let effective = layout;
  if (list.some((s) => s.screen) && effective.startsWith('grid')) {
    effective = effective.replace('grid', 'speaker');
  }
  let view: HTMLElement;
  if (effective.startsWith('speaker')) view = renderSpeaker(list);
  else if (effective.startsWith('single-speaker')) view = renderSingle(list);
  else view = renderGrid(list);
  root.replaceChildren(view);
  // Tracks that went away: detach so their decoders stop.
  const live = new Set(list.map((s) => s.key));
  for (const [key, v] of videos) {
    if (!live.has(key)) {
      v.srcObject = null;
      v.remove();
      videos.delete(key);
    }
  }
}

function attachAudio(track: RemoteTrack, pub: RemoteTrackPublication, p: RemoteParticipant): void {
  const key = `${p.identity}/${pub.trackSid}`;
  if (audios.has(key)) return;
  const el = track.attach();
  audioRoot.appendChild(el);
  audios.set(key, el);
}

function detachAudio(pub: RemoteTrackPublication, p: RemoteParticipant): void {
  const key = `${p.identity}/${pub.trackSid}`;
  audios.get(key)?.remove();
  audios.delete(key);
}

/** Audio-only rooms and video that never decodes: start on time anyway (as the Go template). */
function startFallback(room: Room): void {
  const since = Date.now();
  const timer = setInterval(() => {
    if (egress.started) {
      clearInterval(timer);
      return;
    }
    let subscribed = false;
    let video = false;
    for (const p of room.remoteParticipants.values()) {
      for (const pub of p.trackPublications.values()) {
        subscribed ||= pub.isSubscribed;
        video ||= pub.kind === Track.Kind.Video;
      }
    }
    const waited = Date.now() - since;
    if ((subscribed && !video && waited > AUDIO_ONLY_START_MS) || (subscribed && waited > FRAME_DECODE_TIMEOUT_MS)) {
      egress.startRecording();
      clearInterval(timer);
    }
  }, 100);
}

/** Start-up milestones on the console (the egress logs them at debug level). */
function mark(what: string): void {
  console.debug(`template: ${what} at ${Math.round(performance.now())} ms`);
}

async function main(): Promise<void> {
  mark('script running');
  const url = egress.url();
  const token = egress.token();
  if (!url || !token) {
    showError('missing required params url and token');
    return;
  }
  // The recorder always wants full quality and every frame, whatever its tile size.
  const room = new Room({ adaptiveStream: false, dynacast: false });
  const rerender = () => render(room);
  room
    .on(RoomEvent.TrackSubscribed, (track, pub, p) => {
      mark(`subscribed ${pub.kind} of ${p.identity}`);
      if (track.kind === Track.Kind.Audio) attachAudio(track, pub, p);
      rerender();
    })
    .on(RoomEvent.TrackUnsubscribed, (track, pub, p) => {
      if (track.kind === Track.Kind.Audio) detachAudio(pub, p);
      rerender();
    })
    .on(RoomEvent.ParticipantDisconnected, rerender)
    .on(RoomEvent.ActiveSpeakersChanged, rerender)
    .on(RoomEvent.TrackMuted, rerender)
    .on(RoomEvent.TrackUnmuted, rerender);
  egress.onLayoutChanged(rerender);
  egress.watchRoom(room);
  try {
    mark('connecting');
    await room.connect(url, token);
    mark('connected');
  } catch (e) {
    showError(e instanceof Error ? e.message : String(e));
    return;
  }
  // Autoplay is allowed by the egress's Chrome flags; this covers any remaining policy.
  room.startAudio().catch(() => undefined);
  startFallback(room);
  rerender();
}

main().catch((e) => showError(e instanceof Error ? e.message : String(e)));

// The page's contract with the egress (the same as LiveKit's @livekit/egress-sdk):
// * query parameters `url` (LiveKit WebSocket URL), `token` (the recorder's join token) and
//   `layout`;
// * `START_RECORDING` / `END_RECORDING` on the console, which the egress watches over CDP;
// * the layout can change later: UpdateLayout sets the recorder participant's metadata to
//   `{"layout": "<name>"}`.

import { ParticipantEvent, Room, RoomEvent } from 'livekit-client';

function param(name: string): string {
  return new URLSearchParams(window.location.search).get(name) ?? '';
}

let started = false;
let ended = false;
let layout = param('layout');
const layoutListeners: Array<(layout: string) => void> = [];

export const egress = {
  url: (): string => param('url'),
  token: (): string => param('token'),
  layout: (): string => layout,

  /** Tells the egress to start recording (once). */
  startRecording(): void {
    if (!started) {
      started = true;
      console.debug(`template: first frame at ${Math.round(performance.now())} ms`);
      console.log('START_RECORDING');
    }
  },

  /** Tells the egress the recording is over (once). */
  endRecording(): void {
    if (!ended) {
      ended = true;
      console.log('END_RECORDING');
    }
  },

  get started(): boolean {
    return started;
  },

  onLayoutChanged(f: (layout: string) => void): void {
    layoutListeners.push(f);
  },

  /** Follows the recorder's metadata for layout changes and ends the recording on disconnect. */
  watchRoom(room: Room): void {
    const onMetadata = () => {
      const metadata = room.localParticipant.metadata;
      if (!metadata) return;
      try {
        const next = JSON.parse(metadata)?.layout;
        if (typeof next === 'string' && next !== layout) {
          layout = next;
          layoutListeners.forEach((f) => f(layout));
        }
      } catch {
        // Metadata that is not our JSON is not a layout change.
      }
    };
    room.localParticipant.on(ParticipantEvent.ParticipantMetadataChanged, onMetadata);
    room.on(RoomEvent.Disconnected, () => egress.endRecording());
    onMetadata();
  },
};

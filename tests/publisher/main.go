// lk-publish: joins a LiveKit room and publishes media files as tracks, like
// `lk room join --publish FILE`, but with the track source (camera, microphone, screen_share,
// screen_share_audio) and the participant kind chosen per call. lk v2.18.2 cannot set either
// (its publications are always CAMERA/MICROPHONE, its participants STANDARD), and the egress
// tests need screen shares and participant-kind routes. Built by scripts/setup into
// $EGRESS_CACHE/bin; it uses the same server SDK as lk, so the media path is lk's.
//
// Usage: lk-publish --url URL --api-key K --api-secret S --room ROOM --identity ID
//
//	[--kind standard|agent|sip|ingress|egress] [--fps 30] --publish SOURCE=FILE ...
//
// FILE is .h264, .h265, .ivf (VP8, VP9 or AV1) or .ogg (Opus). It runs until SIGINT/SIGTERM.
//
// Video files are paced at --fps, as `lk room join --fps` paces every file. The SDK's own
// pacing of .ivf files is wrong: pion/webrtc v4.2's ivfreader already scales each frame's
// timestamp by the header's rate/scale (pts*30 for ffmpeg's 1/30 timebase) and server-sdk-go
// v2.19.0's ReaderSampleProvider multiplies that by the timebase again, so every IVF frame
// lasts a whole second. Published that way, a 30 fps VP8/VP9/AV1 file went out at 1 frame/s
// (livekit-server's sender reports: one packet a second), its stream tracker declared the
// layer stopped after 1.5 s, and a keyframe every 15 frames became one every 15 s.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
)

type publishes []string

func (p *publishes) String() string     { return strings.Join(*p, ",") }
func (p *publishes) Set(v string) error { *p = append(*p, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "lk-publish:", err)
		os.Exit(1)
	}
}

func run() error {
	url := flag.String("url", "", "LiveKit URL")
	key := flag.String("api-key", "", "API key")
	secret := flag.String("api-secret", "", "API secret")
	room := flag.String("room", "", "room name")
	identity := flag.String("identity", "", "participant identity")
	kind := flag.String("kind", "standard", "participant kind")
	fps := flag.Float64("fps", 30, "frame rate of video files (.h264, .h265, .ivf)")
	var pubs publishes
	flag.Var(&pubs, "publish", "SOURCE=FILE (repeatable)")
	flag.Parse()
	if *url == "" || *room == "" || *identity == "" || len(pubs) == 0 {
		return fmt.Errorf("--url, --room, --identity and --publish are required")
	}
	k, ok := livekit.ParticipantInfo_Kind_value[strings.ToUpper(*kind)]
	if !ok {
		return fmt.Errorf("--kind %q: not a participant kind", *kind)
	}
	at := auth.NewAccessToken(*key, *secret).
		SetIdentity(*identity).
		SetKind(livekit.ParticipantInfo_Kind(k)).
		SetValidFor(time.Hour).
		SetVideoGrant(&auth.VideoGrant{RoomJoin: true, Room: *room})
	token, err := at.ToJWT()
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	done := make(chan struct{})
	r, err := lksdk.ConnectToRoomWithToken(*url, token, &lksdk.RoomCallback{
		OnDisconnected: func() { close(done) },
	}, lksdk.WithAutoSubscribe(false))
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	defer r.Disconnect()
	for _, p := range pubs {
		source, file, ok := strings.Cut(p, "=")
		if !ok {
			return fmt.Errorf("--publish %q: want SOURCE=FILE", p)
		}
		s, ok := livekit.TrackSource_value[strings.ToUpper(source)]
		if !ok {
			return fmt.Errorf("--publish %q: %q is not a track source", p, source)
		}
		var opts []lksdk.ReaderSampleProviderOption
		if ext := filepath.Ext(file); ext == ".h264" || ext == ".h265" || ext == ".ivf" {
			opts = append(opts, lksdk.ReaderTrackWithFrameDuration(time.Duration(float64(time.Second) / *fps)))
		}
		track, err := lksdk.NewLocalFileTrack(file, opts...)
		if err != nil {
			return fmt.Errorf("--publish %q: %w", p, err)
		}
		pub, err := r.LocalParticipant.PublishTrack(track, &lksdk.TrackPublicationOptions{
			Name:   filepath.Base(file),
			Source: livekit.TrackSource(s),
		})
		if err != nil {
			return fmt.Errorf("--publish %q: %w", p, err)
		}
		fmt.Printf("published %s as %s: %s\n", file, livekit.TrackSource(s), pub.SID())
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-sig:
	case <-done:
	}
	return nil
}

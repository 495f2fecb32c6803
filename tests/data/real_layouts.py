"""Tiny trees in each real dataset's on-disk layout, with real (16x16 px) videos and broken files.

Every writer returns a :class:`Layout`: the folder ``data.root`` takes and the names of its broken files by
kind (the kinds of :mod:`vidgen.data.bad_videos`):

* ``unreadable``: garbage bytes with a video extension;
* ``too_short``: a real video of :data:`SHORT_FRAMES` frames, fewer than the 46 frames a clip of the real
  configs spans (16 frames every 3rd: ``(16 - 1) * 3 + 1``);
* ``missing``: named by the dataset's index (split list, CSV, JSON) and absent from disk.

Good videos have :data:`GOOD_FRAMES` frames, enough for every real config (WebVid / MSR-VTT: 16 every 4th = 61).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

#: frames of a good video (>= 61, the span of 16 frames every 4th)
GOOD_FRAMES = 64
#: frames of a too-short video (< 46, the smallest span of the real configs)
SHORT_FRAMES = 8
#: frame side in pixels (H.264 / MPEG-4 need even sides; the loaders resize to any resolution)
SIDE = 16
#: bytes of an unreadable file
GARBAGE = b"\x00\x01 not a video \xff" * 32


@dataclass
class Layout:
    """A written tree: ``root`` (for ``data.root``), ``bad`` ``{kind: [file names]}``, ``videos`` on disk."""

    root: Path
    bad: dict[str, list[str]] = field(
        default_factory=lambda: {"unreadable": [], "too_short": [], "missing": []}
    )
    videos: int = 0


def write_video(path: Path, num_frames: int, seed: int, side: int = SIDE) -> Path:
    """A real video of moving colour noise: H.264 in ``.mp4`` / ``.mkv``, MPEG-4 part 2 in ``.avi`` (as UCF101's
    xvid files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    codec = "mpeg4" if path.suffix == ".avi" else "libx264"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.height, stream.width, stream.pix_fmt = side, side, "yuv420p"
        for t in range(num_frames):
            frame = av.VideoFrame.from_ndarray(np.roll(base, t, axis=1), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def _good_short_bad(layout: Layout, paths: list[Path], seed: int) -> None:
    """``paths[0]`` unreadable, ``paths[1]`` too short, the rest good."""
    for k, path in enumerate(paths):
        if k == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(GARBAGE)
            layout.bad["unreadable"].append(path.name)
        else:
            write_video(path, SHORT_FRAMES if k == 1 else GOOD_FRAMES, seed + k)
            if k == 1:
                layout.bad["too_short"].append(path.name)
        layout.videos += 1


UCF_CLASSES = ("ApplyEyeMakeup", "Basketball", "YoYo")
#: groups per class: g01 is tested in split 1, g08 in split 2, g15 in split 3; g22 always trains
UCF_GROUPS = (1, 8, 15, 22)


def ucf101(base: Path) -> Layout:
    """``base/UCF-101/<Class>/v_<Class>_gNN_c01.avi`` (3 classes x 4 groups) and ``base/ucfTrainTestlist/``
    (classInd, train and test lists of splits 1-3). Broken: the first listed video of ApplyEyeMakeup's g22
    is garbage, Basketball's g22 too short; ``v_YoYo_g22_c02.avi`` is listed in every trainlist and absent."""
    root = base / "UCF-101"
    layout = Layout(root=root)
    lists = base / "ucfTrainTestlist"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "classInd.txt").write_text("".join(f"{i} {c}\r\n" for i, c in enumerate(UCF_CLASSES, 1)))
    names = [(c, g, f"{c}/v_{c}_g{g:02d}_c01.avi") for c in UCF_CLASSES for g in UCF_GROUPS]
    for n, (cls, group, name) in enumerate(names):
        path = root / name
        if group == 22 and cls == "ApplyEyeMakeup":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(GARBAGE)
            layout.bad["unreadable"].append(path.name)
        else:
            short = group == 22 and cls == "Basketball"
            write_video(path, SHORT_FRAMES if short else GOOD_FRAMES, n)
            if short:
                layout.bad["too_short"].append(path.name)
        layout.videos += 1
    absent = "YoYo/v_YoYo_g22_c02.avi"
    layout.bad["missing"].append(Path(absent).name)
    for split, tested in ((1, range(1, 8)), (2, range(8, 15)), (3, range(15, 22))):
        train = [f"{name} {UCF_CLASSES.index(c) + 1}\r\n" for c, g, name in names if g not in tested]
        train.append(f"{absent} 3\r\n")
        test = [f"{name}\r\n" for c, g, name in names if g in tested]
        (lists / f"trainlist0{split}.txt").write_text("".join(train))
        (lists / f"testlist0{split}.txt").write_text("".join(test))
    return layout


WEBVID_COLUMNS = ["videoid", "contentUrl", "duration", "page_dir", "name"]


def webvid(base: Path, size: str = "10M", with_val: bool = True) -> Layout:
    """``base/WebVid/results_<size>_train.csv`` (+ ``_val.csv``) and ``videos/<page_dir>/<videoid>.mp4``, the
    layout of WebVid's download script. Training rows: 6 on disk (one garbage, one too short) and one missing."""
    root = base / "WebVid"
    layout = Layout(root=root)

    def rows(ids: list[int], page: str) -> list[dict[str, str]]:
        return [
            {
                "videoid": str(i),
                "contentUrl": f"https://example.invalid/{i}.mp4",
                "duration": "PT00H00M03S",
                "page_dir": page,
                "name": f"clip {i} of a scene",
            }
            for i in ids
        ]

    train = rows([1001, 1002, 1003, 1004, 1005, 1006], "001_page") + rows([1007], "002_page")
    _good_short_bad(layout, [root / "videos" / r["page_dir"] / f"{r['videoid']}.mp4" for r in train[:6]], 100)
    layout.bad["missing"].append("1007.mp4")  # a row whose download failed
    files = {f"results_{size}_train.csv": train}
    if with_val:
        val = rows([2001, 2002], "003_page")
        for k, r in enumerate(val):
            write_video(root / "videos" / "003_page" / f"{r['videoid']}.mp4", GOOD_FRAMES, 200 + k)
            layout.videos += 1
        files[f"results_{size}_val.csv"] = val
    for name, table in files.items():
        with (root / name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=WEBVID_COLUMNS)
            writer.writeheader()
            writer.writerows(table)
    return layout


def msrvtt(base: Path) -> Layout:
    """``base/MSRVTT/train_val_videodatainfo.json`` + ``test_videodatainfo.json`` (the 2016 release) and
    ``TrainValVideo/videoN.mp4`` / ``TestVideo/videoN.mp4``; each video has 3 captions. Train: video0-5 on disk
    (video0 garbage, video1 too short) and video6 missing; validate: video7-8; test: video9-10."""
    root = base / "MSRVTT"
    layout = Layout(root=root)
    splits = {"train": range(0, 7), "validate": range(7, 9), "test": range(9, 11)}

    def info(split_names: tuple[str, ...]) -> dict:
        videos, sentences = [], []
        for split in split_names:
            for i in splits[split]:
                videos.append({"video_id": f"video{i}", "split": split, "id": i, "category": i % 20})
                sentences += [
                    {"video_id": f"video{i}", "caption": f"video {i} caption {k}", "sen_id": k}
                    for k in range(3)
                ]
        return {"info": {"year": 2016}, "videos": videos, "sentences": sentences}

    root.mkdir(parents=True, exist_ok=True)
    (root / "train_val_videodatainfo.json").write_text(json.dumps(info(("train", "validate"))))
    (root / "test_videodatainfo.json").write_text(json.dumps(info(("test",))))
    _good_short_bad(layout, [root / "TrainValVideo" / f"video{i}.mp4" for i in range(0, 6)], 300)
    layout.bad["missing"].append("video6.mp4")
    for i in (7, 8, 9, 10):
        write_video(
            root / ("TrainValVideo" if i < 9 else "TestVideo") / f"video{i}.mp4", GOOD_FRAMES, 300 + i
        )
        layout.videos += 1
    return layout


def frame_folders(base: Path, name: str = "sky_timelapse") -> Layout:
    """SkyTimelapse / Taichi-HD style: ``base/<name>/<clip>/<frame>.png`` for 6 clips (one with a garbage
    frame, one too short)."""
    import torch

    from vidgen.io.video import write_png

    root = base / name
    layout = Layout(root=root)
    rng = np.random.default_rng(7)
    for clip in range(6):
        folder = root / f"clip_{clip:02d}"
        count = SHORT_FRAMES if clip == 1 else 48
        for t in range(count):
            frame = torch.from_numpy(rng.integers(0, 256, size=(3, SIDE, SIDE), dtype=np.uint8))
            write_png(folder / f"{t:05d}.png", frame)
        if clip == 0:
            (folder / "00003.png").write_bytes(GARBAGE)
            layout.bad["unreadable"].append(folder.name)
        if clip == 1:
            layout.bad["too_short"].append(folder.name)
        layout.videos += 1
    return layout


def plain_folder(base: Path, name: str = "FaceForensics") -> Layout:
    """FaceForensics style: ``base/<name>/<id>.mp4``, 6 videos (one garbage, one too short) and a stray text file."""
    root = base / name
    layout = Layout(root=root)
    _good_short_bad(layout, [root / f"{k:03d}.mp4" for k in range(6)], 400)
    (root / "README.txt").write_text("not a video")
    return layout


#: ``data=`` config -> the writer of its layout
LAYOUTS = {
    "ucf101": ucf101,
    "webvid": webvid,
    "msrvtt": msrvtt,
    "skytimelapse": lambda base: frame_folders(base, "sky_timelapse"),
    "taichi": lambda base: frame_folders(base, "taichi"),
    "faceforensics": plain_folder,
}

"""The generative model of synthetic alert triplets, one specification per survey.

Every stamp is a small sky scene: background, noise and, now and then, field
stars and a host galaxy that are static (in template and science). A *real*
alert adds a point source (the instrument's PSF) to the science image, which
therefore shows in the difference; a *bogus* one adds one of the survey's
typical artefacts instead. The four specifications differ the way the real
surveys do (stamp size, PSF width in pixels, sky and noise, template depth,
class balance, artefact mix, 8-bit DES stamps, ZTF bad pixels and clipped
stamps, ATLAS burns/spikes/streaks), so that a classifier trained on one
survey loses accuracy on the others. Faint sources (SNR 3-6) and faint
artefact blobs keep each in-survey task short of perfect.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rbda.ingest.synth import scenes

FLOAT32_SENTINEL = np.float32(np.finfo(np.float32).max)


@dataclass(frozen=True)
class SurveySpec:
    name: str
    size: int
    psf_sigma: float  # pixels
    sky: float
    noise: float  # science noise (ADU)
    template_noise: float
    #: class name -> (label, share of the survey, generator kind or kinds with weights)
    classes: dict[str, tuple[int, float, dict[str, float]]]
    host_probability: float = 0.5
    star_density: float = 0.5  # mean field stars per stamp
    snr_range: tuple[float, float] = (3.0, 60.0)
    invalid_patch_probability: float = 0.0  # ZTF: NaN / sentinel patches
    clipped_probability: float = 0.0  # ZTF: stamps at a CCD edge, not square
    eight_bit: bool = False  # DES: 8-bit stamps
    extras: dict = field(default_factory=dict)


BOGUS_MIX_DECAM = {"cosmic_ray": 0.2, "dipole": 0.25, "psf_mismatch": 0.15, "hot_pixel": 0.1,
                   "bad_column": 0.1, "faint_blob": 0.2}

SPECS: dict[str, SurveySpec] = {
    "hits": SurveySpec(
        "hits", size=21, psf_sigma=1.7, sky=400.0, noise=20.0, template_noise=10.0,
        classes={"real": (1, 0.5, {"transient": 1.0}), "bogus": (0, 0.5, BOGUS_MIX_DECAM)},
        host_probability=0.6, star_density=0.3, snr_range=(3.0, 40.0),
    ),
    "des": SurveySpec(
        "des", size=51, psf_sigma=2.3, sky=1500.0, noise=40.0, template_noise=25.0,
        classes={"0": (1, 0.505, {"transient": 1.0}),
                 "1": (0, 0.495, {"cosmic_ray": 0.15, "dipole": 0.25, "psf_mismatch": 0.2,
                                  "bad_column": 0.1, "faint_blob": 0.3})},
        host_probability=0.75, star_density=1.5, snr_range=(3.0, 60.0), eight_bit=True,
    ),
    "ztf": SurveySpec(
        "ztf", size=63, psf_sigma=1.1, sky=150.0, noise=12.0, template_noise=5.0,
        classes={"AGN": (1, 0.276, {"agn": 1.0}), "SN": (1, 0.030, {"transient": 1.0}),
                 "VS": (1, 0.274, {"variable_star": 1.0}), "asteroid": (1, 0.273, {"asteroid": 1.0}),
                 "bogus": (0, 0.147, {"cosmic_ray": 0.2, "dipole": 0.3, "hot_pixel": 0.2,
                                      "bad_column": 0.15, "faint_blob": 0.15})},
        host_probability=0.7, star_density=2.0, snr_range=(5.0, 100.0),
        invalid_patch_probability=0.06, clipped_probability=0.013,
    ),
    "atlas": SurveySpec(
        "atlas", size=61, psf_sigma=0.9, sky=800.0, noise=30.0, template_noise=8.0,
        classes={"burn": (0, 0.17, {"burn": 1.0}), "cr": (0, 0.17, {"cosmic_ray": 1.0}),
                 "kast": (1, 0.136, {"asteroid": 1.0}), "noise": (0, 0.17, {"faint_blob": 1.0}),
                 "spike": (0, 0.17, {"spike": 1.0}), "streak": (1, 0.184, {"streak": 1.0})},
        host_probability=0.0, star_density=1.0, snr_range=(4.0, 50.0),
    ),
}


#: Settings a survey declaration's ``synthetic`` part may give (rbda.surveys), with their types.
DECLARED_SETTINGS = {"psf_sigma": float, "sky": float, "noise": float, "template_noise": float,
                     "host_probability": float, "star_density": float, "snr_range": list, "classes": dict}


def declared_spec(declaration) -> SurveySpec:
    """The generative model of a declared survey (rbda.surveys.Survey) from its ``synthetic`` part:
    ``psf_sigma``, ``sky``, ``noise``, ``template_noise`` (required), ``host_probability``, ``star_density``,
    ``snr_range`` and ``classes`` (class name -> ``{label, share, kinds: {generator kind: weight}}``; default:
    the survey's class map's first real and first bogus class, half each, transients against DECam-like
    artefacts). A SettingError names the survey and the setting otherwise."""
    from rbda.errors import SettingError

    settings = declaration.synthetic
    where = f"survey {declaration.name}: synthetic"
    if settings is None:
        raise SettingError(where, "a synthetic part in the survey's declaration (psf_sigma, sky, noise, "
                                  "template_noise, ...) to simulate it", None)
    unknown = sorted(set(settings) - set(DECLARED_SETTINGS))
    if unknown:
        raise SettingError(where, f"settings among {sorted(DECLARED_SETTINGS)}", unknown)
    values = {}
    for key, kind in DECLARED_SETTINGS.items():
        value = settings.get(key)
        if value is None:
            continue
        if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise SettingError(f"{where}.{key}", "a non-negative number", value)
        values[key] = float(value) if kind is float else value
    missing = [k for k in ("psf_sigma", "sky", "noise", "template_noise") if k not in values]
    if missing:
        raise SettingError(where, f"the settings {', '.join(missing)}", sorted(settings))
    kinds = set(GENERATORS)
    classes = {}
    for name, entry in (values.pop("classes", None) or {
            declaration.real_classes[0]: {"label": 1, "share": 0.5, "kinds": {"transient": 1.0}},
            declaration.bogus_classes[0]: {"label": 0, "share": 0.5, "kinds": BOGUS_MIX_DECAM}}).items():
        if not isinstance(entry, dict) or entry.get("label") not in (0, 1) \
                or not isinstance(entry.get("kinds"), dict) or not set(entry["kinds"]) <= kinds:
            raise SettingError(f"{where}.classes.{name}", f"{{label: 0 or 1, share, kinds: {{kind: weight}}}} with "
                                                          f"kinds among {sorted(kinds)}", entry)
        classes[str(name)] = (int(entry["label"]), float(entry.get("share", 1.0)), dict(entry["kinds"]))
    if "snr_range" in values:
        values["snr_range"] = tuple(float(v) for v in values["snr_range"])
    return SurveySpec(declaration.name, size=declaration.stamp_size, classes=classes, **values)


def class_counts(spec: SurveySpec, n: int) -> dict[str, int]:
    """Deterministic class counts for ``n`` stamps (largest-remainder rounding of the shares)."""
    names = list(spec.classes)
    shares = np.array([spec.classes[c][1] for c in names], dtype=float)
    exact = n * shares / shares.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts))[: n - counts.sum()]:
        counts[i] += 1
    return dict(zip(names, counts.tolist()))


@dataclass
class Scene:
    """One stamp being built: static sky (template, and as seen in science), new flux, subtraction artefacts."""

    static: np.ndarray
    static_sci: np.ndarray
    added: np.ndarray
    diff_only: np.ndarray
    snr: float = 0.0

    def add_static(self, image: np.ndarray, as_seen_in_science: np.ndarray | None = None) -> None:
        self.static += image
        self.static_sci += image if as_seen_in_science is None else as_seen_in_science


@dataclass
class Triplets:
    """Simulated stamps before they are written in a survey's raw layout."""

    template: list[np.ndarray]
    science: list[np.ndarray]
    difference: list[np.ndarray]
    classes: list[str]
    labels: list[int]
    snr: list[float]


class StampSimulator:
    """Draws triplets for one survey specification."""

    def __init__(self, spec: SurveySpec, rng: np.random.Generator):
        self.spec = spec
        self.rng = rng
        self.size = spec.size
        self.c = scenes.centre(spec.size)

    # -- scene pieces -------------------------------------------------------
    def _psf_sigma(self) -> float:
        return self.spec.psf_sigma * self.rng.uniform(0.85, 1.15)

    def _flux_for_snr(self, snr: float, sigma: float) -> float:
        # PSF-fit SNR of a Gaussian source of width sigma in white noise.
        return snr * self.spec.noise * np.sqrt(4 * np.pi) * sigma

    def _snr(self) -> float:
        lo, hi = self.spec.snr_range
        return float(np.exp(self.rng.uniform(np.log(lo), np.log(hi))))

    def _jitter(self, scale: float = 0.7) -> tuple[float, float]:
        return self.c + self.rng.uniform(-scale, scale), self.c + self.rng.uniform(-scale, scale)

    def _field_stars(self, sigma: float) -> np.ndarray:
        image = np.zeros((self.size, self.size))
        for _ in range(self.rng.poisson(self.spec.star_density)):
            x, y = self.rng.uniform(0, self.size, 2)
            if np.hypot(x - self.c, y - self.c) < 4:
                continue
            image += scenes.gaussian_psf(self.size, x, y, sigma, self._flux_for_snr(self._snr() * 2, sigma))
        return image

    def _host(self, x: float, y: float) -> np.ndarray:
        offset = self.rng.normal(0, 2.0, 2)
        return scenes.galaxy(self.size, x + offset[0], y + offset[1], scale=self.rng.uniform(1.5, 4.0),
                             flux=self._flux_for_snr(self.rng.uniform(20, 120), 3.0),
                             axis_ratio=self.rng.uniform(0.4, 1.0), angle=self.rng.uniform(0, np.pi))

    # -- one stamp ----------------------------------------------------------
    def draw(self, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(template, science, difference, snr) for one alert of generator ``kind``."""
        size, rng, spec = self.size, self.rng, self.spec
        if kind not in GENERATORS:
            raise ValueError(f"unknown stamp generator {kind!r}; known: {sorted(GENERATORS)}")
        draw_kind = GENERATORS[kind]
        sigma = self._psf_sigma()
        static = self._field_stars(sigma)
        scene = Scene(static=static, static_sci=static.copy(), added=np.zeros((size, size)),
                      diff_only=np.zeros((size, size)))
        x, y = self._jitter()
        draw_kind(self, scene, x, y, sigma)
        template = spec.sky + scene.static + rng.normal(0, spec.template_noise, (size, size))
        science = (spec.sky * rng.uniform(0.9, 1.1) + scene.static_sci + scene.added
                   + rng.normal(0, spec.noise, (size, size)))
        difference = (science - science.mean()) - (template - template.mean()) + scene.diff_only
        return template, science, difference, scene.snr

    # -- real alerts --------------------------------------------------------
    def _draw_transient(self, scene: Scene, x: float, y: float, sigma: float) -> None:
        """A supernova: a new point source, often on a host galaxy."""
        scene.snr = self._snr()
        if self.rng.random() < self.spec.host_probability:
            scene.add_static(self._host(x, y))
        scene.added += scenes.gaussian_psf(self.size, x, y, sigma, self._flux_for_snr(scene.snr, sigma))

    def _draw_asteroid(self, scene: Scene, x: float, y: float, sigma: float) -> None:
        """A moving object caught as a point source: nothing under it in the template."""
        scene.snr = self._snr()
        scene.added += scenes.gaussian_psf(self.size, x, y, sigma, self._flux_for_snr(scene.snr, sigma))

    def _draw_variable_star(self, scene: Scene, x: float, y: float, sigma: float) -> None:
        """A star in the template that brightened or faded."""
        scene.snr = self._snr()
        star = scenes.gaussian_psf(self.size, x, y, sigma, self._flux_for_snr(self.rng.uniform(20, 200), sigma))
        self._variable(scene, x, y, sigma, star)

    def _draw_agn(self, scene: Scene, x: float, y: float, sigma: float) -> None:
        """A galaxy nucleus that brightened or faded."""
        scene.snr = self._snr()
        nucleus = self._host(x, y) * 1.5 + scenes.gaussian_psf(
            self.size, x, y, sigma, self._flux_for_snr(self.rng.uniform(10, 60), sigma))
        self._variable(scene, x, y, sigma, nucleus)

    def _variable(self, scene: Scene, x: float, y: float, sigma: float, base: np.ndarray) -> None:
        """``base`` in template and science, plus a positive or negative point source of ``scene.snr``."""
        scene.add_static(base)
        sign = 1.0 if self.rng.random() < 0.6 else -1.0
        scene.added += sign * scenes.gaussian_psf(self.size, x, y, sigma, self._flux_for_snr(scene.snr, sigma))

    def _draw_streak(self, scene: Scene, x: float, y: float, sigma: float) -> None:
        """A fast asteroid: a trail, brighter in total the longer it is."""
        scene.snr = self._snr()
        length = self.rng.uniform(4, 14)
        scene.added += scenes.streak(self.size, x, y, length, self.rng.uniform(0, np.pi), sigma,
                                     self._flux_for_snr(scene.snr, sigma) * (1 + length / (3 * sigma)))

    # -- bogus alerts -------------------------------------------------------
    def _draw_cosmic_ray(self, scene: Scene, x: float, y: float, sigma: float) -> None:
        cx, cy = self._jitter(3.0)
        scene.added += scenes.cosmic_ray(self.size, self.rng, cx, cy, self.spec.noise * self.rng.uniform(8, 60))

    def _draw_dipole(self, scene: Scene, x: float, y: float, sigma: float) -> None:
        """A star misaligned between template and science: positive and negative lobes."""
        star = self._flux_for_snr(self.rng.uniform(30, 300), sigma)
        scene.static += scenes.gaussian_psf(self.size, x, y, sigma, star)
        shift = self.rng.normal(0, 0.6, 2)
        scene.static_sci += scenes.gaussian_psf(self.size, x + shift[0], y + shift[1], sigma, star)

    def _draw_psf_mismatch(self, scene: Scene, x: float, y: float, sigma: float) -> None:
        """A star seen with a different PSF in the science image: a ring or core residual."""
        star = self._flux_for_snr(self.rng.uniform(30, 300), sigma)
        scene.static += scenes.gaussian_psf(self.size, x, y, sigma, star)
        scene.static_sci += scenes.gaussian_psf(self.size, x, y, sigma * self.rng.choice([0.75, 1.3]), star)

    def _draw_hot_pixel(self, scene: Scene, x: float, y: float, sigma: float) -> None:
        xi, yi = (int(round(v)) for v in self._jitter(2.0))
        scene.added[yi, xi] += self.spec.noise * self.rng.uniform(10, 80)

    def _draw_bad_column(self, scene: Scene, x: float, y: float, sigma: float) -> None:
        col = int(round(self._jitter(3.0)[0]))
        scene.added += scenes.bad_column(self.size, col, self.spec.noise * self.rng.uniform(2, 15),
                                         start=int(self.rng.integers(0, self.size // 2)))

    def _draw_faint_blob(self, scene: Scene, x: float, y: float, sigma: float) -> None:
        """Noise peaks and ghosts: a faint smooth bump, narrower or wider than the PSF."""
        blob_sigma = sigma * self.rng.choice([self.rng.uniform(0.45, 0.7), self.rng.uniform(1.6, 2.6)])
        scene.added += scenes.gaussian_psf(self.size, x, y, blob_sigma,
                                           self._flux_for_snr(self.rng.uniform(2, 6), blob_sigma))

    def _draw_burn(self, scene: Scene, x: float, y: float, sigma: float) -> None:
        """A saturated star near the alert: flat-topped, with a bleed trail and residuals."""
        rng = self.rng
        star = self._flux_for_snr(rng.uniform(2000, 20000), sigma)
        bx, by = self._jitter(6.0)
        image = scenes.gaussian_psf(self.size, bx, by, sigma * 1.5, star)
        level = image.max() * rng.uniform(0.05, 0.3)
        burnt = scenes.saturate(image, level)
        trail = scenes.bad_column(self.size, int(round(bx)), level * rng.uniform(0.2, 0.6))
        scene.add_static(burnt)
        scene.diff_only += (trail.T if rng.random() < 0.5 else trail) + 0.2 * (image - burnt) * rng.uniform(-1, 1)

    def _draw_spike(self, scene: Scene, x: float, y: float, sigma: float) -> None:
        """A diffraction spike of a bright star crossing the stamp, stronger in the science image."""
        rng = self.rng
        sx, sy = self._jitter(10.0)
        star = scenes.gaussian_psf(self.size, sx, sy, sigma, self._flux_for_snr(rng.uniform(500, 5000), sigma))
        line = scenes.spike(self.size, sx, sy, rng.choice([0.0, np.pi / 2]) + rng.normal(0, 0.05),
                            rng.uniform(0.5, 1.2), self.spec.noise * rng.uniform(5, 30))
        scene.add_static(star + line, star + line * rng.uniform(1.3, 2.0))


#: generator kind (as named in SurveySpec.classes) -> the method that adds it to a scene
GENERATORS = {
    "transient": StampSimulator._draw_transient,
    "asteroid": StampSimulator._draw_asteroid,
    "variable_star": StampSimulator._draw_variable_star,
    "agn": StampSimulator._draw_agn,
    "streak": StampSimulator._draw_streak,
    "cosmic_ray": StampSimulator._draw_cosmic_ray,
    "dipole": StampSimulator._draw_dipole,
    "psf_mismatch": StampSimulator._draw_psf_mismatch,
    "hot_pixel": StampSimulator._draw_hot_pixel,
    "bad_column": StampSimulator._draw_bad_column,
    "faint_blob": StampSimulator._draw_faint_blob,
    "burn": StampSimulator._draw_burn,
    "spike": StampSimulator._draw_spike,
}


def simulate(spec: SurveySpec, n: int, rng: np.random.Generator) -> Triplets:
    """``n`` alerts of ``spec`` in a shuffled order, with survey-specific defects applied."""
    counts = class_counts(spec, n)
    order = rng.permutation(np.repeat(list(counts), list(counts.values())))
    sim = StampSimulator(spec, rng)
    out = Triplets([], [], [], [], [], [])
    for class_name in order.tolist():
        label, _, kinds = spec.classes[class_name]
        kind = rng.choice(list(kinds), p=np.array(list(kinds.values())) / sum(kinds.values()))
        template, science, difference, snr = sim.draw(str(kind))
        images = [template, science, difference]
        if spec.eight_bit:
            images = [to_eight_bit(im) for im in images]
        else:
            images = [im.astype(np.float32) for im in images]
        if rng.random() < spec.invalid_patch_probability:
            mark_invalid_patch(images, rng)
        if rng.random() < spec.clipped_probability:
            width = int(rng.integers(spec.size // 2, spec.size))
            keep = slice(0, width) if rng.random() < 0.5 else slice(spec.size - width, None)
            images = [im[:, keep] for im in images]
        out.template.append(images[0])
        out.science.append(images[1])
        out.difference.append(images[2])
        out.classes.append(class_name)
        out.labels.append(label)
        out.snr.append(snr)
    return out


def to_eight_bit(image: np.ndarray) -> np.ndarray:
    """Scale to 0-255 between the 1st and 99.5th percentile, as 8-bit stamp cutouts are."""
    lo, hi = np.percentile(image, [1.0, 99.5])
    scaled = (image - lo) / max(hi - lo, 1e-9) * 255.0
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def mark_invalid_patch(images: list[np.ndarray], rng: np.random.Generator) -> None:
    """ZTF-like bad pixels: a NaN or float32-max block near an edge, in every channel."""
    size = images[0].shape[0]
    h, w = (int(v) for v in rng.integers(3, size // 2, 2))
    top = int(rng.choice([0, size - h]))
    left = int(rng.integers(0, size - w))
    value = np.float32(np.nan) if rng.random() < 0.6 else FLOAT32_SENTINEL * rng.choice([-1, 1])
    for image in images:
        image[top : top + h, left : left + w] = value
    if rng.random() < 0.1:  # a few stamps lose a whole channel's centre
        images[int(rng.integers(0, 3))][:] = value

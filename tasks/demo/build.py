"""Writes the demo's dataset files, in RadFM's own formats, from the phantom parameters.

Every question, answer, report and rationale below is derived from the same parameters the phantom
generator draws, so the ground truth is true of the images by construction. Real scans come from the
sample files pydicom and nibabel ship; their answers come from the files' own metadata (the DICOM
``Modality`` tag, the NIfTI voxel size), read here at build time and checked again by the tests.

Run ``python -m radbench.tasks.demo.build`` after changing a case; a test fails if the committed
files differ from a fresh build.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

FILES = Path(__file__).with_name("files")
NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}
SIDE_WORDS = {"left": "left", "right": "right", "bilateral": "both sides"}

# (case id, split, parameters). CXR: 2D radiographs; CT: 3D volumes.
CXR_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("cxr01", "test", {"effusion": "left", "effusion_px": 30}),
    ("cxr02", "test", {"effusion": "right", "effusion_px": 40}),
    ("cxr03", "test", {"effusion": "bilateral", "effusion_px": 25}),
    ("cxr04", "test", {"ctr": 0.64}),
    ("cxr05", "test", {"nodule": "left", "nodule_mm": 18}),
    ("cxr06", "test", {"nodule": "right", "nodule_mm": 24}),
    ("cxr07", "test", {}),
    ("cxr08", "test", {"ctr": 0.62, "effusion": "bilateral", "effusion_px": 20}),
    ("cxr09", "test", {"nodule": "right", "nodule_mm": 14, "effusion": "left", "effusion_px": 30}),
    ("cxr10", "test", {}),
    ("cxr11", "test", {"ctr": 0.66, "nodule": "left", "nodule_mm": 20}),
    ("cxr12", "test", {"effusion": "right", "effusion_px": 22}),
    ("cxr13", "test", {"nodule": "left", "nodule_mm": 28}),
    ("cxr14", "test", {"ctr": 0.60}),
    ("cxr21", "train", {"effusion": "left", "effusion_px": 35}),
    ("cxr22", "train", {"effusion": "right", "effusion_px": 28}),
    ("cxr23", "train", {"ctr": 0.63}),
    ("cxr24", "train", {"nodule": "left", "nodule_mm": 20}),
    ("cxr25", "train", {}),
    ("cxr26", "train", {"nodule": "right", "nodule_mm": 16, "ctr": 0.61}),
    ("cxr27", "train", {"effusion": "bilateral", "effusion_px": 30}),
    ("cxr28", "train", {}),
]
# Follow-up pairs: (case id, split, prior parameters, current parameters).
CXR_PAIRS: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("pair01", "test", {"effusion": "left", "effusion_px": 15}, {"effusion": "left", "effusion_px": 45}),
    ("pair02", "test", {"effusion": "right", "effusion_px": 45}, {"effusion": "right", "effusion_px": 15}),
    ("pair03", "train", {"effusion": "right", "effusion_px": 12}, {"effusion": "right", "effusion_px": 40}),
]
CT_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("ct01", "test", {"region": "chest", "nodules": [["left", 15]]}),
    ("ct02", "test", {"region": "chest", "nodules": [["right", 20], ["right", 15]]}),
    ("ct03", "test", {"region": "chest", "nodules": [["left", 15], ["right", 15], ["left", 20]], "scans": 2}),
    ("ct04", "test", {"region": "chest", "effusion": "right"}),
    ("ct05", "test", {"region": "chest", "effusion": "bilateral", "scans": 2}),
    ("ct06", "test", {"region": "head", "haemorrhage": "left", "haemorrhage_mm": 20}),
    ("ct07", "test", {"region": "head", "haemorrhage": "right", "haemorrhage_mm": 30, "scans": 2}),
    ("ct08", "test", {"region": "head", "haemorrhage": "right", "haemorrhage_mm": 15}),
    ("ct09", "test", {"region": "chest", "nodules": [["right", 25]]}),
    ("ct10", "test", {"region": "chest", "effusion": "left"}),
    ("ct21", "train", {"region": "chest", "nodules": [["right", 15]]}),
    ("ct22", "train", {"region": "chest", "nodules": [["left", 20], ["left", 15]], "scans": 2}),
    ("ct23", "train", {"region": "chest", "effusion": "left"}),
    ("ct24", "train", {"region": "head", "haemorrhage": "left", "haemorrhage_mm": 25}),
    ("ct25", "train", {"region": "head", "haemorrhage": "right", "haemorrhage_mm": 20}),
    ("ct26", "train", {"region": "chest", "effusion": "bilateral", "nodules": [["right", 15]]}),
]
# Real scans shipped in the pydicom and nibabel wheels.
REAL_SCANS: list[tuple[str, str]] = [
    ("pkg:pydicom/CT_small.dcm", "test"),
    ("pkg:pydicom/MR_small.dcm", "test"),
    ("pkg:pydicom/examples_overlay.dcm", "test"),
    ("pkg:nibabel/nicom/tests/data/slicethickness_empty_string.dcm", "test"),
    ("pkg:pydicom/693_J2KI.dcm", "train"),
    ("pkg:nibabel/tests/data/0.dcm", "train"),
]
REAL_VOLUMES: list[tuple[str, str]] = [("pkg:nibabel/tests/data/anatomical.nii", "test")]
MODALITY_NAMES = {"CT": "CT", "MR": "MRI", "CR": "X-ray", "DX": "X-ray"}

ARTICLES = {
    "Pulmonary nodule": "A pulmonary nodule is a small round opacity in the lung, up to 3 cm across.",
    "Pleural effusion": "A pleural effusion is an abnormal amount of fluid between the visceral and parietal pleura.",
    "Intracranial haemorrhage": "Intracranial haemorrhage is bleeding within the skull; acute blood is hyperdense on CT.",
}
ARTICLE_FEATURES = {
    "Pulmonary nodule": "Round, well-defined soft-tissue density surrounded by aerated lung.",
    "Pleural effusion": "Dependent fluid density in the pleural space with a meniscus.",
    "Intracranial haemorrhage": "Hyperdense intra-axial collection on non-contrast CT.",
}


def cxr_findings(p: dict[str, Any]) -> tuple[str, str]:
    """Findings and impression sentences for a chest radiograph phantom."""
    findings, impression = [], []
    if p.get("ctr", 0.42) > 0.5:
        findings.append("The heart is enlarged.")
        impression.append("Cardiomegaly.")
    else:
        findings.append("The heart size is normal.")
    if p.get("effusion"):
        where = "bilateral" if p["effusion"] == "bilateral" else p["effusion"]
        findings.append(f"There is a {where} pleural effusion.")
        impression.append(f"{where.capitalize()} pleural effusion.")
    else:
        findings.append("No pleural effusion.")
    if p.get("nodule"):
        findings.append(f"A {p['nodule_mm']} mm nodule is seen in the {p['nodule']} lung.")
        impression.append(f"{p['nodule'].capitalize()} lung nodule.")
    if not impression:
        impression.append("No acute cardiopulmonary abnormality.")
    return " ".join(findings), " ".join(impression)


def cxr_questions(p: dict[str, Any]) -> list[tuple[str, str]]:
    qs = [("Is there a pleural effusion?", "yes" if p.get("effusion") else "no")]
    if p.get("effusion"):
        qs.append(("On which side is the pleural effusion?", SIDE_WORDS[p["effusion"]]))
    qs.append(("Is the heart enlarged?", "yes" if p.get("ctr", 0.42) > 0.5 else "no"))
    if p.get("nodule"):
        qs.append(("Which lung contains the nodule?", p["nodule"]))
    return qs


def ct_description(p: dict[str, Any]) -> dict[str, Any]:
    """Title, history, findings, impression, features and VQA pairs for a CT phantom.

    The rationale features state side and polarity ("Right pleural effusion.", "No pleural
    effusion.") and chest cases may hold both findings, so the rationale metrics have sides,
    negations and second diagnoses to check; a two-scan study says so in its history, and a large
    nodule comes with symptoms, so some histories have no training twin (the majority baseline then
    answers with another disease's rationale).
    """
    scans = p.get("scans", 1)
    series = " Non-contrast and post-contrast series." if scans == 2 else ""
    both = "Non-contrast and post-contrast CT"
    if p["region"] == "head":
        side, mm = p["haemorrhage"], p["haemorrhage_mm"]
        enh = " The lesion is brighter on the post-contrast series." if scans == 2 else ""
        return {
            "title": "Intracranial haemorrhage",
            "pat": "Sudden headache.",
            "pre": f"{both} head." if scans == 2 else "Non-contrast CT head.",
            "finding": f"A {mm} mm hyperdense lesion in the {side} cerebral hemisphere.{enh}{series}",
            "impression": f"Acute {side} intracranial haemorrhage.",
            "features": [f"Hyperdense focal lesion in the {side} cerebral hemisphere.", f"Lesion diameter about {mm} mm."],
            "vqa": [("On which side is the haemorrhage?", side), ("Is there an intracranial haemorrhage?", "yes")],
        }
    effusion, nodules = p.get("effusion"), p.get("nodules", [])
    finding, impression, features, vqa = [], [], [], []
    if effusion:
        where = "left and right" if effusion == "bilateral" else effusion
        finding.append(f"Dependent fluid in the {where} pleural space.")
        impression.append(f"{effusion.capitalize()} pleural effusion.")
        features += [f"{effusion.capitalize()} pleural effusion.", f"Posterior dependent fluid density in the {where} pleural space."]
        vqa.append(("Where is the pleural effusion?", SIDE_WORDS[effusion]))
    if nodules:
        sides = sorted({s for s, _ in nodules})
        side_text = sides[0] if len(sides) == 1 else "left and right"
        count = NUMBER_WORDS[len(nodules)]
        largest = max(mm for _, mm in nodules)
        plural = "nodule" if len(nodules) == 1 else "nodules"
        finding.append(f"{count.capitalize()} {plural} in the {side_text} lung, the largest {largest} mm.")
        impression.append(f"{count.capitalize()} pulmonary {plural}.")
        features += [f"{count.capitalize()} round soft-tissue pulmonary {plural} in the {side_text} lung.", f"Largest nodule {largest} mm."]
        vqa += [("How many lung nodules are there?", count),
                ("Which lung contains the largest nodule?", max(nodules, key=lambda n: n[1])[0])]
    else:
        features.append("No lung nodule.")
        vqa.append(("Is there a lung nodule?", "no"))
    if not effusion:
        finding.append("No pleural effusion.")
        features.append("No pleural effusion.")
    symptomatic = bool(nodules) and max(mm for _, mm in nodules) >= 25
    return {
        "title": "Pleural effusion" if effusion else "Pulmonary nodule",
        "pat": "Shortness of breath." if effusion else "Cough and weight loss." if symptomatic else "Incidental finding.",
        "pre": f"{both} chest." if scans == 2 else "CT chest.",
        "finding": " ".join(finding) + series,
        "impression": " ".join(impression),
        "features": features,
        "vqa": vqa,
    }


def real_scan_answers(path: str) -> dict[str, str]:
    """Modality and plane facts read from a shipped scan's own metadata."""
    from radbench.images.paths import resolve
    from radbench.types import ImageRef

    local = resolve(ImageRef(path=path))
    if local.suffix == ".dcm":
        import pydicom

        ds = pydicom.dcmread(str(local), stop_before_pixels=True)
        return {"modality": MODALITY_NAMES[str(ds.Modality)]}
    import nibabel as nib

    img = nib.load(str(local))
    return {"voxel_mm": f"{float(img.header.get_zooms()[0]):g}", "slices": str(img.shape[2])}


def _csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def build() -> dict[str, str]:
    """Every demo file's name and content."""
    files: dict[str, str] = {}
    phantoms: dict[str, dict[str, Any]] = {}
    by_split: dict[str, dict[str, list[Any]]] = {
        s: {"vqa2d": [], "vqa3d": [], "casereport": [], "mimic": [], "binary": [], "modality": [], "article": []} for s in ("test", "train")
    }
    for case, split, p in CXR_CASES:
        image = f"images/{case}.png"
        phantoms[image] = {"generator": "cxr", "params": p, "seed": int(case[3:])}
        rows = by_split[split]
        for q, a in cxr_questions(p):
            rows["vqa2d"].append({"img_root_dir": "", "Figure_path": image, "Question": q, "Answer": a})
        finding, impression = cxr_findings(p)
        rows["mimic"].append({"image_path": image, "label": f"Findings: {finding} Impression: {impression}"})
        for disease, present in (
            ("Cardiomegaly", p.get("ctr", 0.42) > 0.5),
            ("Pleural effusion", bool(p.get("effusion"))),
            ("Lung nodule", bool(p.get("nodule"))),
        ):
            rows["binary"].append({"image_path": image, "disease": disease, "label": int(present)})
        if int(case[3:]) % 3 == 1:  # a few radiographs, so the modality set is not mostly X-ray
            rows["modality"].append({"image_path": image, "answer": "X-ray"})
    for case, split, prior, current in CXR_PAIRS:
        # PMC-CaseReport layout: figure files are {img_root}/{PMC_id}_{img_id}.jpg.
        for offset, (fig, params) in enumerate((("prior", prior), ("current", current))):
            phantoms[f"images/{case}_{fig}.jpg"] = {"generator": "cxr", "params": params, "seed": 100 + int(case[4:]) * 2 + offset}
        larger = "second" if current["effusion_px"] > prior["effusion_px"] else "first"
        by_split[split]["casereport"].append(
            {
                "PMC_id": case,
                "img_ref": "['prior', 'current']",
                "context": "Two frontal chest radiographs of one patient, the first taken a week before the second.",
                "question": "Q:Which of the two radiographs shows the larger pleural effusion, the first or the second?",
                "answer": f"A:{larger}",
            }
        )
    for case, split, p in CT_CASES:
        image = f"images/{case}.npy"
        phantoms[image] = {"generator": "ct", "params": p, "seed": 200 + int(case[2:])}
        desc = ct_description(p)
        rows = by_split[split]
        for q, a in desc["vqa"]:
            rows["vqa3d"].append({"image_path": image, "question": q, "answer": a})
        rows["article"].append(
            {
                "pre": desc["pre"],
                "pat": desc["pat"],
                "npy_path": image,
                "finding": desc["finding"],
                "impression": desc["impression"],
                "radiographic_features": desc["features"],
                "articles": [ARTICLES[desc["title"]]],
                "title": desc["title"],
            }
        )
    for path, split in REAL_SCANS:
        by_split[split]["modality"].append({"image_path": path, "answer": real_scan_answers(path)["modality"]})
    for path, split in REAL_VOLUMES:
        facts = real_scan_answers(path)
        by_split[split]["vqa3d"].append(
            {"image_path": path, "question": "What is the voxel size of this volume in millimetres?", "answer": facts["voxel_mm"]}
        )
        by_split[split]["vqa3d"].append(
            {"image_path": path, "question": "How many axial slices does this volume have?", "answer": facts["slices"]}
        )
    for split, rows in by_split.items():
        files[f"vqa2d_{split}.csv"] = _csv(rows["vqa2d"], ["img_root_dir", "Figure_path", "Question", "Answer"])
        files[f"case_report_{split}.csv"] = _csv(rows["casereport"], ["PMC_id", "img_ref", "context", "question", "answer"])
        files[f"radiology_vqa_{split}.csv"] = _csv(rows["vqa3d"], ["image_path", "question", "answer"])
        files[f"mimic_caption_{split}.csv"] = _csv(rows["mimic"], ["image_path", "label"])
        files[f"chestxray_balance_{split}.csv"] = _csv(rows["binary"], ["image_path", "disease", "label"])
        files[f"radio_modality_{split}.csv"] = _csv(rows["modality"], ["image_path", "answer"])
        files[f"radiology_article_npy_{split}.json"] = json.dumps(rows["article"], indent=1) + "\n"
    files["articles_resave.json"] = (
        json.dumps({t: {"text": ARTICLES[t], "chatgpt_radiographic_features": ARTICLE_FEATURES[t]} for t in ARTICLES}, indent=1)
        + "\n"
    )
    files["modality_set.json"] = json.dumps({"modality": ["CT", "MRI", "X-ray"]}) + "\n"
    files["phantoms.json"] = json.dumps(phantoms, indent=1, sort_keys=True) + "\n"
    return files


def main() -> None:
    FILES.mkdir(exist_ok=True)
    for name, text in build().items():
        (FILES / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(build())} files to {FILES}")


if __name__ == "__main__":
    main()

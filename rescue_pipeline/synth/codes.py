"""Terminology tables for rendering: drugs, histologies, primary sites, statuses, names.

Data, not logic, so a reviewer can check every code in one place. RxNorm ingredient codes are
the ones given in the brief; SNOMED CT is used only where the code is certain (363443007
ovary, 128462008 secondary malignancy, body sites); tube and peritoneum primaries fall back to
ICD-10 codes, which the site data specification allows.
"""

from __future__ import annotations

from rescue_pipeline.synth import flavours as fl

MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition"
HISTOLOGY_EXT = f"{MCODE}/mcode-histology-morphology-behavior"
EVIDENCE_EXT = f"{MCODE}/mcode-cancer-disease-status-evidence-type"  # STU2 onwards
ARMS = {"A": "A: secondary cytoreductive surgery + chemotherapy", "B": "B: chemotherapy alone"}

# drug key: (RxNorm ingredient, display, dose range in mg)
DRUGS: dict[str, tuple[str, str, tuple[int, int]]] = {
    "carboplatin": ("40048", "carboplatin", (350, 750)),
    "cisplatin": ("2555", "cisplatin", (100, 140)),
    "paclitaxel": ("56946", "paclitaxel", (250, 330)),
    "gemcitabine": ("12574", "gemcitabine", (1500, 1900)),
    "doxorubicin_liposomal": ("214525", "doxorubicin liposomal", (45, 60)),
    "bevacizumab": ("253337", "bevacizumab", (900, 1200)),
    "olaparib": ("1597582", "olaparib", (300, 300)),
    "niraparib": ("1918231", "niraparib", (200, 300)),
    "rucaparib": ("1862581", "rucaparib", (600, 600)),
}
HISTOLOGY_NAMES = {
    "8461/3": "High-grade serous carcinoma",
    "8441/3": "Serous carcinoma, NOS",
    "8460/3": "Low-grade serous carcinoma",
    "8380/3": "Endometrioid adenocarcinoma, NOS",
    "8310/3": "Clear cell adenocarcinoma, NOS",
    "8480/3": "Mucinous adenocarcinoma",
    "8442/1": "Serous borderline tumor",
    "8472/1": "Mucinous borderline tumor",
    "8620/3": "Granulosa cell tumor, malignant",
    "9060/3": "Dysgerminoma",
}
PRIMARY_CODES = {  # flavour -> site -> (system, code, display)
    "a": {
        "ovary": (fl.SNOMED, "363443007", "Malignant tumor of ovary"),
        "tube": (fl.ICD10, "C57.0", "Malignant neoplasm of fallopian tube"),
        "peritoneum": (fl.ICD10, "C48.2", "Malignant neoplasm of peritoneum, unspecified"),
    },
    "b": {
        "ovary": (fl.ICD10CM, "C56.9", "Malignant neoplasm of unspecified ovary"),
        "tube": (fl.ICD10CM, "C57.00", "Malignant neoplasm of unspecified fallopian tube"),
        "peritoneum": (fl.ICD10CM, "C48.2", "Malignant neoplasm of peritoneum, unspecified"),
    },
    "c": {
        "ovary": (fl.ICD10, "C56", "Malignant neoplasm of ovary"),
        "tube": (fl.ICD10, "C57.0", "Malignant neoplasm of fallopian tube"),
        "peritoneum": (fl.ICD10, "C48.1", "Malignant neoplasm of specified parts of peritoneum"),
    },
}
BODY_SITES = {
    "liver": ("10200004", "Liver structure"),
    "lung": ("39607008", "Lung structure"),
    "pleura": ("3120008", "Pleural membrane structure"),
    "peritoneum": ("15425007", "Peritoneum structure"),
}
FIGO = {
    "IIB": "C96254",
    "IIIA": "C96256",
    "IIIB": "C96257",
    "IIIC": "C96258",
    "IVA": "C96262",
    "IVB": "C96263",
}
STATUS_CODES = {  # (flavour STU) value -> (code, display)
    "stu4": {
        "ned": ("550991000124107", "Malignant neoplasm in full remission"),
        "improved": ("551001000124108", "Malignant neoplasm in partial remission"),
        "stable": ("359746009", "Patient's condition stable"),
        "worsened": ("271299001", "Patient's condition worsened"),
        "undetermined": ("709137006", "Patient condition undetermined"),
    },
    "stu3": {
        "ned": ("281900007", "No abnormality detected"),
        "improved": ("268910001", "Patient's condition improved"),
        "stable": ("359746009", "Patient's condition stable"),
        "worsened": ("271299001", "Patient's condition worsened"),
        "undetermined": ("709137006", "Patient condition undetermined"),
    },
}
RESPONSE_TO_STATUS = {
    "CR": "ned",
    "PR": "improved",
    "SD": "stable",
    "PD": "worsened",
    "NE": "undetermined",
}
NCIT_RESPONSE = {
    "CR": ("C4870", "Complete Response"),
    "PR": ("C18058", "Partial Response"),
    "SD": ("C18213", "Stable Disease"),
    "PD": ("C35571", "Progressive Disease"),
}
NAMES = {
    "a": (
        (
            "Martin",
            "Bernard",
            "Dubois",
            "Lefèvre",
            "Moreau",
            "Girard",
            "Müller",
            "Fontaine",
            "Rousseau",
            "Faure",
            "Leroy",
            "Bonnet",
        ),
        (
            "Marie",
            "Hélène",
            "Françoise",
            "Isabelle",
            "Nathalie",
            "Sylvie",
            "Céline",
            "Zoë",
            "Véronique",
            "Anne",
            "Brigitte",
            "Sandrine",
        ),
        ("Lyon", "Paris", "Grenoble"),
    ),
    "b": (
        (
            "Smith",
            "Jones",
            "Taylor",
            "Brown",
            "Williams",
            "Wilson",
            "Davies",
            "Evans",
            "O'Brien",
            "Hughes",
            "Walker",
            "Green",
        ),
        (
            "Margaret",
            "Susan",
            "Helen",
            "Sarah",
            "Elizabeth",
            "Fiona",
            "Claire",
            "Alison",
            "Joanne",
            "Gillian",
            "Ann",
            "Karen",
        ),
        ("Leeds", "York", "Bristol"),
    ),
    "c": (
        (
            "Garcia",
            "Miller",
            "Davis",
            "Rodriguez",
            "Nguyen",
            "Hernandez",
            "Lopez",
            "Anderson",
            "Jackson",
            "Harris",
            "Clark",
            "Young",
        ),
        (
            "Mary",
            "Barbara",
            "Jennifer",
            "Maria",
            "Nancy",
            "Lisa",
            "Sandra",
            "Donna",
            "Carol",
            "Michelle",
            "Deborah",
            "Laura",
        ),
        ("Boston", "Albany", "Hartford"),
    ),
}


STREETS = ("Main", "Church", "Station", "Park", "Mill", "School")

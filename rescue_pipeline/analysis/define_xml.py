"""define.xml: the export's metadata as CDISC Define-XML 2.1, written with odmlib's model and
validated against the Define-XML 2.1 schema odmlib ships.

Everything comes from the define document (define.define_document), so define.xml, define.html
and define.json cannot disagree. Object ids follow the usual conventions: IG.<dataset>,
IT.<dataset>.<variable>, MT.<dataset>.<variable>, CL.*, VL.<dataset>.<variable>,
WC.<dataset>.<variable>.<value>, COM.*, LF.*.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import odmlib.define_2_1.model as odm
from odmlib.exceptions import OdmlibSchemaValidationError
from odmlib.odm_parser import ODMSchemaValidator
from xmlschema import XMLSchemaValidationError

from rescue_pipeline import __version__
from rescue_pipeline.analysis.codelists import CT_STANDARD

RULES_LEAF = "LF.RULES"
RULES_HREF = "define.html"  # its "Derivation rules" section: the rule modules' own account


class DefineInvalid(ValueError):
    """define.xml does not validate against the Define-XML 2.1 schema."""


def _text(text: str) -> Any:
    description = odm.Description()
    description.TranslatedText.append(odm.TranslatedText(_content=text, lang="en"))
    return description


def _data_type(kind: str, fmt: str) -> str:
    """In XPT an ADaM date is a SAS numeric date with a DATE9. format (integer in Define-XML);
    CSV and Parquet hold real dates."""
    if kind == "date":
        return "integer" if fmt == "xpt" else "date"
    return {"text": "text", "integer": "integer", "float": "float"}[kind]


def build(document: Mapping[str, Any], *, created: dt.datetime | None = None) -> Any:
    """The odmlib ODM object of define.xml for `document`."""
    created = created or dt.datetime.now(dt.UTC)
    study_id = document["study"]["studyid"]
    protocol = document["study"]["protocol"] or study_id
    run = document.get("derivation_run") or {}
    root = odm.ODM(
        FileOID=f"DEF.{study_id}.ADAM", FileType="Snapshot", ODMVersion="1.3.2",
        CreationDateTime=created.strftime("%Y-%m-%dT%H:%M:%S"),
        Originator="rescue-pipeline", SourceSystem="rescue-pipeline",
        SourceSystemVersion=__version__,
        Context="Submission" if document["format"] == "xpt" else "Other",
    )  # fmt: skip
    study = odm.Study(OID=f"ST.{study_id}")
    globals_ = odm.GlobalVariables()
    globals_.StudyName = odm.StudyName(_content=study_id)
    globals_.StudyDescription = odm.StudyDescription(
        _content="RESCUE: secondary cytoreductive surgery + chemotherapy versus chemotherapy "
        "alone in platinum-sensitive first recurrence of ovarian, tubal or peritoneal cancer"
    )
    globals_.ProtocolName = odm.ProtocolName(_content=protocol)
    study.GlobalVariables = globals_
    mdv = odm.MetaDataVersion(
        OID=f"MDV.{study_id}.ADAM", Name=f"{study_id} ADaM",
        Description="Analysis datasets derived from FHIR R4 site data", DefineVersion="2.1.0",
        CommentOID="COM.RUN" if run else None,
    )  # fmt: skip
    standard = document["standard"]
    mdv.Standards = odm.Standards()
    mdv.Standards.Standard.append(odm.Standard(
        OID="STD.ADAMIG", Name=standard["name"], Type="IG", Version=standard["version"],
        Status="Final",
    ))  # fmt: skip
    if any(c["nci"] for c in document["codelists"]):
        mdv.Standards.Standard.append(odm.Standard(
            OID="STD.CT", Name=CT_STANDARD["name"], Type="CT",
            PublishingSet=CT_STANDARD["publishing_set"], Version=CT_STANDARD["version"],
            Status="Final",
        ))  # fmt: skip
    supplemental = odm.SupplementalDoc()
    supplemental.DocumentRef.append(odm.DocumentRef(leafID=RULES_LEAF))
    mdv.SupplementalDoc = supplemental

    wheres: list[Any] = []
    value_lists: list[Any] = []
    item_defs: list[Any] = []
    methods: list[Any] = []
    comments: list[Any] = []
    for dataset in document["datasets"]:
        name = dataset["name"]
        group = odm.ItemGroupDef(
            OID=f"IG.{name}", Name=name, SASDatasetName=name, Repeating=_repeating(dataset),
            IsReferenceData="No", Purpose="Analysis", Structure=dataset["structure"],
            ArchiveLocationID=f"LF.{name}", StandardOID="STD.ADAMIG",
            CommentOID=f"COM.{name}" if dataset.get("comment") else None,
        )  # fmt: skip
        group.Description = _text(dataset["label"])
        if dataset.get("comment"):
            comments.append(_comment(f"COM.{name}", dataset["comment"]))
        for v in dataset["variables"]:
            item = f"IT.{name}.{v['name']}"
            derived = v["origin"] == "Derived"
            group.ItemRef.append(odm.ItemRef(
                ItemOID=item, OrderNumber=v["order"],
                Mandatory="Yes" if v["mandatory"] else "No",
                KeySequence=v["key_sequence"],
                MethodOID=f"MT.{name}.{v['name']}" if derived else None,
            ))  # fmt: skip
            item_defs.append(_item_def(item, v, fmt=document["format"]))
            if derived:
                methods.append(_method(f"MT.{name}.{v['name']}", f"{name}.{v['name']}",
                                       v["derivation"]))  # fmt: skip
            if v["comment"] and not any(c.OID == f"COM.{v['name']}" for c in comments):
                comments.append(_comment(f"COM.{v['name']}", v["comment"]))
        group.Class = odm.Class(Name=dataset["class"])
        if dataset.get("subclass"):
            group.Class.SubClass.append(odm.SubClass(Name=dataset["subclass"]))
        if dataset.get("file"):
            group.leaf = odm.leaf(ID=f"LF.{name}", href=dataset["file"])
            group.leaf.title = odm.title(_content=dataset["file"])
        mdv.ItemGroupDef.append(group)
        _value_level(dataset, document["format"], item_defs, value_lists, wheres, methods)

    for definition in value_lists:
        mdv.ValueListDef.append(definition)
    for where in wheres:
        mdv.WhereClauseDef.append(where)
    for item_def in item_defs:
        mdv.ItemDef.append(item_def)
    for codelist in document["codelists"]:
        mdv.CodeList.append(_codelist(codelist))
    for method in methods:
        mdv.MethodDef.append(method)
    if run:
        comments.append(_comment("COM.RUN", _run_text(run)))
    for comment in comments:
        mdv.CommentDef.append(comment)
    rules = odm.leaf(ID=RULES_LEAF, href=RULES_HREF)
    rules.title = odm.title(_content="Derivation rules (the rule book as the code applies it)")
    mdv.leaf.append(rules)
    study.MetaDataVersion = mdv
    root.Study = study
    return root


def _repeating(dataset: Mapping[str, Any]) -> str:
    return "No" if list(dataset["keys"]) == ["USUBJID"] else "Yes"


def _item_def(oid: str, v: Mapping[str, Any], *, fmt: str) -> Any:
    data_type = _data_type(v["type"], fmt)
    item = odm.ItemDef(
        OID=oid, Name=v["name"], SASFieldName=v["name"], DataType=data_type,
        Length=v["length"] if data_type in ("text", "integer", "float") else None,
        DisplayFormat=v["format"], CommentOID=f"COM.{v['name']}" if v["comment"] else None,
    )  # fmt: skip
    item.Description = _text(v["label"])
    if v["codelist"]:
        item.CodeListRef = odm.CodeListRef(CodeListOID=v["codelist"])
    origin = odm.Origin(Type=v["origin"])
    if v["origin"] in ("Predecessor", "Assigned"):  # a derived one has its MethodDef instead
        origin.Description = _text(v["derivation"])
    item.Origin.append(origin)
    return item


def _method(oid: str, target: str, text: str) -> Any:
    method = odm.MethodDef(OID=oid, Name=f"Algorithm to derive {target}", Type="Computation")
    method.Description = _text(text)
    method.DocumentRef.append(odm.DocumentRef(leafID=RULES_LEAF))
    return method


def _comment(oid: str, text: str) -> Any:
    comment = odm.CommentDef(OID=oid)
    comment.Description = _text(text)
    return comment


def _value_level(
    dataset: Mapping[str, Any],
    dataset_format: str,
    item_defs: list[Any],
    value_lists: list[Any],
    wheres: list[Any],
    methods: list[Any],
) -> None:
    """One ValueListDef per variable with value-level metadata, an ItemDef, a where-clause and a
    method per value of the variable it depends on."""
    name = dataset["name"]
    by_variable: dict[str, list[Mapping[str, Any]]] = {}
    for entry in dataset.get("value_level", []):
        by_variable.setdefault(entry["variable"], []).append(entry)
    variables = {v["name"]: v for v in dataset["variables"]}
    for variable, entries in by_variable.items():
        target = variables[variable]
        value_list = odm.ValueListDef(OID=f"VL.{name}.{variable}")
        for order, entry in enumerate(entries, start=1):
            key = f"{name}.{variable}.{entry['value']}"
            where = odm.WhereClauseDef(OID=f"WC.{key}")
            check = odm.RangeCheck(Comparator="EQ", SoftHard="Soft",
                                   ItemOID=f"IT.{name}.{entry['where_variable']}")  # fmt: skip
            check.CheckValue.append(odm.CheckValue(_content=entry["value"]))
            where.RangeCheck.append(check)
            wheres.append(where)
            ref = odm.ItemRef(ItemOID=f"IT.{key}", OrderNumber=order, Mandatory="Yes",
                              MethodOID=f"MT.{key}")  # fmt: skip
            ref.WhereClauseRef.append(odm.WhereClauseRef(WhereClauseOID=f"WC.{key}"))
            value_list.ItemRef.append(ref)
            item = odm.ItemDef(OID=f"IT.{key}", Name=variable, SASFieldName=variable,
                               DataType=_data_type(target["type"], dataset_format),
                               Length=target["length"])  # fmt: skip
            item.Description = _text(f"{target['label']} for {entry['label']}"[:200])
            if target["codelist"]:
                item.CodeListRef = odm.CodeListRef(CodeListOID=target["codelist"])
            item.Origin.append(odm.Origin(Type="Derived"))
            item_defs.append(item)
            methods.append(_method(f"MT.{key}", f"{name}.{variable} where "
                                   f"{entry['where_variable']} = {entry['value']}",
                                   entry["derivation"]))  # fmt: skip
        value_lists.append(value_list)
        for item_def in item_defs:
            if item_def.OID == f"IT.{name}.{variable}":
                item_def.ValueListRef = odm.ValueListRef(ValueListOID=f"VL.{name}.{variable}")


def _codelist(codelist: Mapping[str, Any]) -> Any:
    out = odm.CodeList(
        OID=codelist["oid"], Name=codelist["name"], DataType=codelist["type"],
        StandardOID="STD.CT" if codelist["nci"] else None,
        IsNonStandard=None if codelist["nci"] else "Yes",
    )  # fmt: skip
    decoded = any(t["decode"] for t in codelist["terms"])
    for order, term in enumerate(codelist["terms"], start=1):
        item: Any
        if decoded:
            item = odm.CodeListItem(CodedValue=term["value"], OrderNumber=order)
            item.Decode = odm.Decode()
            item.Decode.TranslatedText.append(
                odm.TranslatedText(_content=term["decode"] or term["value"], lang="en")
            )
        else:
            item = odm.EnumeratedItem(CodedValue=term["value"], OrderNumber=order)
        if term.get("extended"):
            item.ExtendedValue = "Yes"
        if term["nci"]:
            item.Alias.append(odm.Alias(Context="nci:ExtCodeID", Name=term["nci"]))
        (out.CodeListItem if decoded else out.EnumeratedItem).append(item)
    if codelist["nci"]:
        out.Alias.append(odm.Alias(Context="nci:ExtCodeID", Name=codelist["nci"]))
    return out


def _run_text(run: Mapping[str, Any]) -> str:
    settings = run.get("settings") or {}
    cutoff = settings.get("data_cutoff") if isinstance(settings, Mapping) else None
    return (f"Derived at {run.get('derived_at')} (UTC) with data cut-off {cutoff}; the settings "
            "used are in define.json (derivation_run).")  # fmt: skip


def write(document: Mapping[str, Any], path: Path) -> None:
    """Write define.xml for `document` to `path` and validate it against the Define-XML 2.1
    schema: an invalid file is an error, never a deliverable."""
    build(document).write_xml(str(path))
    validate(path, name="define.xml")


def validate(path: Path, *, name: str | None = None) -> None:
    """Raise DefineInvalid naming the file (`name`, else the path's) and its first schema
    error."""
    validator: Any = ODMSchemaValidator(standard="define", version="2.1")
    try:
        validator.validate_file(str(path))
    except (XMLSchemaValidationError, OdmlibSchemaValidationError, ElementTree.ParseError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DefineInvalid(f"{name or path.name} is not valid Define-XML 2.1: {reason}") from exc

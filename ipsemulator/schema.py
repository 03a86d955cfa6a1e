"""Reply shapes, read from the bundled WSDLs (``wsdl/IpsApi*.wsdl``).

The real service answers each namespace in its own version's shapes, and the
bundled WSDLs declare exactly those shapes. So replies are serialized by
walking the sequence each WSDL declares: handlers hand over dicts with every
field any version has, and only the declared elements are written, in the
declared order. A new version is a new WSDL file, not new code.

Requests are held to the same contract: a parameter its ``<operation>Param``
does not declare, out of the declared order, repeated, in another namespace,
or an array item of another name is ``ipsApiFault 30003 INVALID_REQUEST_XML``
(``check_params``), as a schema-bound service refuses request XML its schema
does not allow.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path

from lxml import etree

from .tables import IpsFault

XSD = "http://www.w3.org/2001/XMLSchema"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
WSDL_DIR = Path(__file__).resolve().parent.parent / "wsdl"
WSDL_GLOB = "IpsApi*.wsdl"
# Appinfo notes on an <op>Return element: fields of a type that this version
# declares but that operation leaves out (``unfilled``: pre-4.0 getJobLogs has no
# endDate) or always sends as 0 (``zeroed``: its duplicate and update counts).
NOTES = "urn:ipsadmin:wsdl-notes"

QName = tuple[str, str]  # (namespace, local name)


@dataclass(frozen=True)
class Element:
    """One element of a sequence (or a top-level element)."""

    name: str
    ns: str  # the element's own namespace ("" when unqualified)
    type: QName | None  # None: an anonymous complex type, see ``content``
    many: bool
    content: tuple[Element, ...] | None = None
    required: bool = False  # minOccurs is not 0


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           remove_comments=True, remove_blank_text=True)


def _resolve(el, value: str) -> QName:
    prefix, _, local = value.rpartition(":")
    ns = el.nsmap.get(prefix or None)
    if ns is None and prefix:
        raise ValueError(f"unknown prefix {prefix!r} in {value!r}")
    return ns or "", local


class WsdlSchema:
    """The types and elements one WSDL declares, and a serializer for them."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.filename = self.path.name
        self.tree = etree.parse(str(self.path), _parser())
        root = self.tree.getroot()
        if root.tag != f"{{{WSDL}}}definitions":
            raise ValueError(f"{self.path}: not a WSDL")
        self.namespace: str = root.get("targetNamespace")
        self.types: dict[QName, tuple[Element, ...]] = {}
        self.elements: dict[QName, Element] = {}
        #: {operation: {type name: field names the reply leaves out}}
        self.unfilled: dict[str, dict[str, frozenset[str]]] = {}
        #: {operation: {type name: field names the reply always sends as 0}}
        self.zeroed: dict[str, dict[str, frozenset[str]]] = {}
        self._schemas = list(root.iterfind(f"{{{WSDL}}}types/{{{XSD}}}schema"))
        for schema in self._schemas:
            tns = schema.get("targetNamespace", "")
            qualified = schema.get("elementFormDefault") == "qualified"
            for child in schema:
                if child.tag == f"{{{XSD}}}complexType":
                    self.types[(tns, child.get("name"))] = self._content(child, tns, qualified)
                elif child.tag == f"{{{XSD}}}element":
                    self.elements[(tns, child.get("name"))] = self._element(child, tns, True)
                    name = child.get("name", "")
                    for kind, into in (("unfilled", self.unfilled), ("zeroed", self.zeroed)):
                        notes = child.findall(f"{{{XSD}}}annotation/{{{XSD}}}appinfo/{{{NOTES}}}{kind}")
                        if notes and name.endswith("Return"):
                            into[name[: -len("Return")]] = {
                                n.get("type"): frozenset((n.text or "").split()) for n in notes}
        self._check_references()

    # ------------------------------------------------------------- parsing
    def _element(self, el, tns: str, qualified: bool) -> Element:
        if el.get("ref"):
            raise ValueError(f"{self.filename}: element refs are not supported ({el.get('ref')})")
        form = el.get("form")
        ns = tns if (form == "qualified" or (form is None and qualified)) else ""
        many = el.get("maxOccurs", "1") not in ("0", "1")
        required = el.get("minOccurs", "1") != "0"
        if el.get("type"):
            return Element(el.get("name"), ns, _resolve(el, el.get("type")), many, required=required)
        inline = el.find(f"{{{XSD}}}complexType")
        if inline is None:  # no type at all: xsd:anyType, written as text
            return Element(el.get("name"), ns, (XSD, "anyType"), many, required=required)
        return Element(el.get("name"), ns, None, many, self._content(inline, tns, qualified), required)

    def _content(self, complex_type, tns: str, qualified: bool) -> tuple[Element, ...]:
        out: list[Element] = []

        def walk(group):
            for child in group:
                if child.tag == f"{{{XSD}}}element":
                    out.append(self._element(child, tns, qualified))
                elif child.tag in (f"{{{XSD}}}sequence", f"{{{XSD}}}choice", f"{{{XSD}}}all"):
                    walk(child)

        walk(complex_type)
        return tuple(out)

    def _check_references(self) -> None:
        def check(elements):
            for e in elements:
                if e.content is not None:
                    check(e.content)
                elif e.type[0] != XSD and e.type not in self.types:
                    raise ValueError(f"{self.filename}: unknown type {e.type} of element {e.name!r}")

        for content in self.types.values():
            check(content)
        check(self.elements.values())

    # --------------------------------------------------------------- queries
    def return_element(self, operation: str) -> Element | None:
        return self.elements.get((self.namespace, f"{operation}Return"))

    def declares(self, operation: str) -> bool:
        return self.return_element(operation) is not None

    def content_of(self, element: Element) -> tuple[Element, ...] | None:
        """The child elements of ``element``; None for a simple type."""
        if element.content is not None:
            return element.content
        if element.type[0] == XSD:
            return None
        return self.types[element.type]

    def sequence(self, type_name: str) -> tuple[str, ...]:
        """The element names of a complex type of this WSDL's namespace."""
        return tuple(e.name for e in self.types[(self.namespace, type_name)])

    def params(self, operation: str) -> tuple[Element, ...]:
        """The parameters ``<operation>Param`` declares, in sequence order."""
        element = self.elements.get((self.namespace, f"{operation}Param"))
        return tuple(self.content_of(element) or ()) if element is not None else ()

    def check_params(self, operation: str, param_el) -> None:
        """Refuse (30003) a request whose ``<operation>Param`` this WSDL does not allow:
        an undeclared parameter, one out of the declared order or repeated, one in another
        namespace, or an array item of another name."""
        declared = self.params(operation)
        order = {e.name: i for i, e in enumerate(declared)}
        where = f"{operation}Param of {self.namespace}"
        last = -1
        for child in param_el:
            if not isinstance(child.tag, str):
                continue
            q = etree.QName(child)
            index = order.get(q.localname)
            if index is None:
                raise IpsFault(30003, f"Parameter '{q.localname}' is not declared by {where}")
            e = declared[index]
            if (q.namespace or "") != e.ns:
                raise IpsFault(30003, f"Parameter '{q.localname}' of {where} is in namespace "
                                      f"'{q.namespace or ''}', not '{e.ns}'")
            if index < last or (index == last and not e.many):
                raise IpsFault(30003, f"Parameter '{q.localname}' of {where} is repeated or out of "
                                      f"the declared order ({', '.join(order)})")
            last = index
            content = self.content_of(e)
            if content is None:
                continue  # children where text belongs: 30001 when dispatched, like any bad value
            names = {(c.ns, c.name) for c in content}
            for item in (c for c in child if isinstance(c.tag, str)):
                iq = etree.QName(item)
                if ((iq.namespace or ""), iq.localname) not in names:
                    raise IpsFault(30003, f"'{iq.localname}' is not declared in parameter "
                                          f"'{q.localname}' of {where}")

    # ---------------------------------------------------------- serializing
    def reply(self, operation: str, result: dict | None, nsmap=None) -> etree._Element:
        """The ``<operation>Return`` element for ``result``."""
        element = self.return_element(operation)
        if element is None:
            raise KeyError(f"{self.filename} declares no {operation}Return")
        el = etree.Element(f"{{{element.ns}}}{element.name}" if element.ns else element.name,
                           nsmap=nsmap)
        notes = (self.unfilled.get(operation, {}), self.zeroed.get(operation, {}))
        self._fill(el, element.content or self.content_of(element) or (), result or {}, notes)
        return el

    def _fill(self, parent, elements, value, notes, type_name=None) -> None:
        left_out = notes[0].get(type_name, frozenset())
        zeroed = notes[1].get(type_name, frozenset())
        for e in elements:
            v = 0 if e.name in zeroed else value.get(e.name)
            if v is None or e.name in left_out:
                continue
            for item in (v if e.many else (v,)):
                if item is not None:
                    self._emit(parent, e, item, notes)

    def _emit(self, parent, e: Element, value, notes) -> None:
        el = etree.SubElement(parent, f"{{{e.ns}}}{e.name}" if e.ns else e.name)
        content = self.content_of(e)
        if content is None:
            el.text = _text(value, e.type[1])
            return
        if isinstance(value, (list, tuple)):
            # An array type: its one repeated element holds the list.
            if len(content) != 1 or not content[0].many:
                raise TypeError(f"a list for {e.name!r}, which is not an array")
            value = {content[0].name: value}
        if not isinstance(value, dict):
            raise TypeError(f"{e.name!r} is a complex type; got {type(value).__name__}")
        self._fill(el, content, value, notes, e.type[1] if e.type else None)

    # ------------------------------------------------------------ validating
    @cached_property
    def xml_schema(self) -> etree.XMLSchema:
        """An lxml XMLSchema of every xsd:schema of this WSDL (for tests)."""
        root = self.tree.getroot()
        files: dict[str, bytes] = {}
        by_ns: dict[str, str] = {}
        for i, schema in enumerate(self._schemas):
            by_ns.setdefault(schema.get("targetNamespace", ""), f"schema{i}.xsd")
        for i, schema in enumerate(self._schemas):
            # Re-root the schema with every namespace declaration in scope, so
            # that QName values such as type="tns:Foo" still resolve.
            copy_ = etree.Element(schema.tag, attrib=dict(schema.attrib),
                                  nsmap={**root.nsmap, **schema.nsmap})
            for child in schema:
                copy_.append(copy.deepcopy(child))
            for imp in copy_.iterfind(f"{{{XSD}}}import"):
                if not imp.get("schemaLocation") and imp.get("namespace") in by_ns:
                    imp.set("schemaLocation", by_ns[imp.get("namespace")])
            files[f"schema{i}.xsd"] = etree.tostring(copy_)
        driver = etree.Element(f"{{{XSD}}}schema", nsmap={"xsd": XSD},
                               targetNamespace="urn:ipsemulator:schemas")
        for ns, name in by_ns.items():
            etree.SubElement(driver, f"{{{XSD}}}import", namespace=ns, schemaLocation=name)

        class Resolver(etree.Resolver):
            def resolve(self, url, public_id, context):
                name = (url or "").rsplit("/", 1)[-1]
                if name in files:
                    return self.resolve_string(files[name], context)
                return None

        parser = etree.XMLParser(no_network=True)
        parser.resolvers.add(Resolver())
        doc = etree.fromstring(etree.tostring(driver), parser,
                               base_url="file:///ipsemulator/driver.xsd")
        return etree.XMLSchema(doc)


def _text(value, xsd_type: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    if xsd_type == "double":
        return repr(float(value))
    if xsd_type in ("int", "long"):
        return str(int(value))
    return str(value)


def load_wsdls(directory: Path = WSDL_DIR) -> dict[str, WsdlSchema]:
    """Every ``IpsApi*.wsdl`` of ``directory``, by target namespace."""
    out: dict[str, WsdlSchema] = {}
    for path in sorted(Path(directory).glob(WSDL_GLOB)):
        schema = WsdlSchema(path)
        if schema.namespace in out:
            raise ValueError(f"{path.name} and {out[schema.namespace].filename} share the "
                             f"namespace {schema.namespace}")
        out[schema.namespace] = schema
    if not out:
        raise FileNotFoundError(f"no {WSDL_GLOB} in {directory}")
    return out

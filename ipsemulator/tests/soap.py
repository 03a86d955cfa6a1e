"""Raw SOAP helpers for the emulator tests: lxml envelopes over requests.

Deliberately independent of the emulator's own code (and of jobs/ips/)."""

from __future__ import annotations

import requests
from lxml import etree

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
NS = "http://www.scene7.com/IpsApi/xsd"
NS_2014 = "http://www.scene7.com/IpsApi/xsd/2014-04-03"
NS_LEGACY = "http://www.scene7.com/IpsApi"
ADMIN = "ipsadmin@example.com"
TIMEOUT = 10


def envelope(operation: str, params=(), *, ns: str = NS, user: str | None = ADMIN,
             password: str = "demo", auth: str = "header", header_extra=(),
             prefix: str | None = "ns1") -> bytes:
    """A SOAP 1.1 request. params: (name, value) pairs; a list value becomes
    ``items`` children. auth: "header" (authHeader), "legacy"
    (AuthUser/AuthPassword) or "none"."""
    env = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soapenv": SOAP_ENV})
    header = etree.SubElement(env, f"{{{SOAP_ENV}}}Header")
    if auth == "header":
        ah = etree.SubElement(header, f"{{{NS}}}authHeader", nsmap={None: NS})
        for name, value in [("user", user), ("password", password), *header_extra]:
            if value is not None:
                etree.SubElement(ah, f"{{{NS}}}{name}").text = str(value)
    elif auth == "legacy":
        etree.SubElement(header, f"{{{NS_LEGACY}}}AuthUser", nsmap={"a": NS_LEGACY}).text = user
        etree.SubElement(header, f"{{{NS_LEGACY}}}AuthPassword", nsmap={"a": NS_LEGACY}).text = password
    body = etree.SubElement(env, f"{{{SOAP_ENV}}}Body")
    op = etree.SubElement(body, f"{{{ns}}}{operation}Param", nsmap={prefix: ns})
    for name, value in params:
        el = etree.SubElement(op, f"{{{ns}}}{name}")
        if isinstance(value, list):
            for item in value:
                etree.SubElement(el, f"{{{ns}}}items").text = item
        else:
            el.text = str(value)
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


def post(emu, body: bytes, *, soap_action: str | None = None, headers=None, **kwargs):
    h = {"Content-Type": "text/xml; charset=utf-8"}
    if soap_action is not None:
        h["SOAPAction"] = soap_action
    h.update(headers or {})
    kwargs.setdefault("timeout", TIMEOUT)
    return requests.post(emu.service_url, data=body, headers=h, **kwargs)


def call(emu, operation: str, params=(), *, soap_action: str | None = "", headers=None,
         request_kwargs=None, **env_kwargs):
    """POST one operation; soap_action "" means '"<operation>"'."""
    action = f'"{operation}"' if soap_action == "" else soap_action
    return post(emu, envelope(operation, params, **env_kwargs), soap_action=action,
                headers=headers, **(request_kwargs or {}))


def result(resp, operation: str, ns: str = NS):
    """The <operation>Return element of a successful reply."""
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/xml")
    root = etree.fromstring(resp.content)
    body = root.find(f"{{{SOAP_ENV}}}Body")
    (ret,) = list(body)
    assert ret.tag == f"{{{ns}}}{operation}Return", ret.tag
    return ret


def fault(resp) -> dict:
    root = etree.fromstring(resp.content)
    f = root.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    assert f is not None, resp.text
    (detail,) = list(f.find("detail"))
    return {
        "status": resp.status_code,
        "faultcode": f.findtext("faultcode"),
        "faultstring": f.findtext("faultstring"),
        "family": etree.QName(detail).localname,
        "family_ns": etree.QName(detail).namespace,
        "code": int(detail.findtext(f"{{{NS}}}code")),
        "reason": detail.findtext(f"{{{NS}}}reason"),
    }


def items(el, array: str, ns: str = NS) -> list:
    """The items of ret/<array> as dicts of their simple children."""
    arr = el.find(f"{{{ns}}}{array}")
    assert arr is not None, etree.tostring(el)
    return [as_dict(item) for item in arr.findall(f"{{{ns}}}items")]


def as_dict(el) -> dict:
    return {etree.QName(c).localname: (c.text if len(c) == 0 else c) for c in el}


def scheduled_jobs(emu, company="47", user=ADMIN, ns=NS, **kw) -> list[dict]:
    resp = call(emu, "getScheduledJobs", [("companyHandle", company)], user=user, ns=ns, **kw)
    return items(result(resp, "getScheduledJobs", ns), "jobArray", ns)


def active_jobs(emu, params=(), user=ADMIN, ns=NS) -> list[dict]:
    return items(result(call(emu, "getActiveJobs", params, user=user, ns=ns), "getActiveJobs", ns),
                 "jobArray", ns)


def job_logs(emu, params=(), user=ADMIN, ns=NS) -> list[dict]:
    return items(result(call(emu, "getJobLogs", params, user=user, ns=ns), "getJobLogs", ns),
                 "jobLogArray", ns)


def log_details(emu, company, handle, params=(), user=ADMIN, ns=NS) -> list[tuple[dict, list[dict]]]:
    """getJobLogDetails of one job/run handle: [(log, [detail rows])]."""
    ret = result(call(emu, "getJobLogDetails", [("companyHandle", company), ("jobHandle", handle),
                                                *params], user=user, ns=ns), "getJobLogDetails", ns)
    logs = items(ret, "jobLogArray", ns)
    return [(log, [as_dict(d) for d in log["detailArray"]] if log.get("detailArray") is not None else [])
            for log in logs]


def execute(emu, job_handle="47|My Test Job|", company="47", user=ADMIN, ns=NS):
    return call(emu, "executeJob", [("companyHandle", company), ("jobHandle", job_handle)],
                user=user, ns=ns)

"""The WSDL endpoints, and plain zeep against the served WSDL."""

import pytest
import requests
import zeep
from lxml import etree

from .soap import NS, NS_2014

WSDL = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
WSDL_SOAP12 = "http://schemas.xmlsoap.org/wsdl/soap12/"


@pytest.mark.parametrize("version, namespace", [(None, NS), ("2014-04-03", NS_2014)])
def test_it_serves_each_wsdl_with_its_own_address(ips_emulator, version, namespace):
    url = ips_emulator.wsdl_url(version)
    assert url.endswith("/scene7/webservice/IpsApi.wsdl" if version is None
                        else "/scene7/webservice/IpsApi-2014-04-03.wsdl")
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/xml; charset=utf-8"
    root = etree.fromstring(resp.content)
    assert root.tag == f"{{{WSDL}}}definitions"
    assert root.get("targetNamespace") == namespace
    (address,) = root.iter(f"{{{WSDL_SOAP}}}address")
    assert address.get("location") == ips_emulator.service_url
    (address12,) = root.iter(f"{{{WSDL_SOAP12}}}address")
    assert address12.get("location") == ips_emulator.service_url


def test_it_uses_the_host_header_for_the_address(ips_emulator):
    resp = requests.get(ips_emulator.wsdl_url(), headers={"Host": "ips.example.test:9999"},
                        timeout=10)
    (address,) = etree.fromstring(resp.content).iter(f"{{{WSDL_SOAP}}}address")
    assert address.get("location") == "http://ips.example.test:9999/scene7/services/IpsApiService"


def test_it_serves_the_wsdl_at_service_url_query(ips_emulator):
    resp = requests.get(ips_emulator.service_url + "?wsdl", timeout=10)
    assert resp.status_code == 200
    assert etree.fromstring(resp.content).get("targetNamespace") == NS


def test_unknown_paths_are_404(ips_emulator):
    assert requests.get(ips_emulator.base_url + "/scene7/webservice/Other.wsdl", timeout=10).status_code == 404
    assert requests.get(ips_emulator.base_url + "/", timeout=10).status_code == 404


@pytest.mark.parametrize("version", [None, "2014-04-03"])
def test_zeep_runs_a_job_and_lists_jobs(ips_emulator, version):
    client = zeep.Client(ips_emulator.wsdl_url(version))
    assert client.service._binding_options["address"] == ips_emulator.service_url
    auth = client.get_element(f"{{{NS}}}authHeader")(user="service@example.com", password="demo")

    jobs = client.service.getScheduledJobs(companyHandle="47", _soapheaders=[auth])
    names = [j.name for j in jobs]
    assert "My Test Job" in names and "Nightly | Publish" in names and "<b>Bold</b> Upload" in names
    job = next(j for j in jobs if j.jobHandle == "47|My Test Job|")
    assert job.nextFireTime.utcoffset() is not None
    assert job.triggerState == "Normal"

    assert client.service.executeJob(companyHandle="47", jobHandle="47|My Test Job|",
                                     _soapheaders=[auth]) is None
    active = client.service.getActiveJobs(companyHandle="47", _soapheaders=[auth])
    assert [a.originalName for a in active] == ["My Test Job"]


def test_zeep_sees_an_ips_fault(ips_emulator):
    client = zeep.Client(ips_emulator.wsdl_url())
    auth = client.get_element(f"{{{NS}}}authHeader")(user="service@example.com", password="demo")
    with pytest.raises(zeep.exceptions.Fault) as info:
        client.service.executeJob(companyHandle="47", jobHandle="47|No Such Job|",
                                  _soapheaders=[auth])
    assert info.value.message == "IpsApiException"
    assert info.value.detail[0].findtext(f"{{{NS}}}code") == "30001"


@pytest.mark.parametrize("version", [None, "2014-04-03"])
def test_zeep_speaks_soap_1_2_through_the_soap12_port(ips_emulator, version):
    # zeep's own SOAP 1.2 reader (not the dashboard's) on the emulator's 1.2 replies and faults.
    client = zeep.Client(ips_emulator.wsdl_url(version))
    service = client.bind("IpsApiService", "IpsApiSoap12Port")
    auth = client.get_element(f"{{{NS}}}authHeader")(user="service@example.com", password="demo")

    jobs = service.getScheduledJobs(companyHandle="47", _soapheaders=[auth])
    assert "My Test Job" in [j.name for j in jobs]
    assert service.executeJob(companyHandle="47", jobHandle="47|My Test Job|", _soapheaders=[auth]) is None
    with pytest.raises(zeep.exceptions.Fault) as info:
        service.executeJob(companyHandle="47", jobHandle="47|No Such Job|", _soapheaders=[auth])

    assert (info.value.message, info.value.code) == ("IpsApiException", "soapenv:Sender")
    assert info.value.detail[0].findtext(f"{{{NS}}}code") == "30001"
    assert [c["soap_version"] for c in ips_emulator.state.calls] == ["1.2"] * 3


@pytest.mark.parametrize("version", [None, "2012-02-14", "2013-02-15", "2014-04-03", "2016-01-14-beta"])
def test_a_strict_client_of_each_served_wsdl_reads_every_job_reply(ips_emulator, version, clock):
    # zeep (strict: an element its WSDL does not declare, or out of order, is an error) built
    # from each WSDL the emulator serves reads the replies of that namespace whole.
    ips_emulator.state.job_duration = 10
    client = zeep.Client(ips_emulator.wsdl_url(version))
    auth = client.get_element(f"{{{NS}}}authHeader")(user="service@example.com", password="demo")
    svc = client.service
    jobs = svc.getScheduledJobs(companyHandle="47", _soapheaders=[auth])
    (upload,) = [j for j in jobs if j.type == "UrlUpload"]
    assert len(upload.uploadUrlsJob.urlArray["items"]) == 3  # in every version
    svc.executeJob(companyHandle="47", jobHandle="47|My Test Job|", _soapheaders=[auth])
    clock.advance(5)
    (run,) = svc.getActiveJobs(companyHandle="47", _soapheaders=[auth])
    assert run.state == "Running" and run.serverName
    clock.advance(10)
    logs = svc.getJobLogs(companyHandle="47", _soapheaders=[auth])
    mine = next(log for log in logs if log.jobHandle == run.jobHandle)
    assert (mine.totalFileCount, mine.fatalError) == (4, False)
    (detailed,) = svc.getJobLogDetails(companyHandle="47", jobHandle=run.jobHandle, _soapheaders=[auth])
    assert [d.logType for d in detailed.detailArray["items"]][-1] == "EndImageServingPublish"
    # Undeclared parameters cannot even be built by a client of the WSDL.
    if version is None:
        with pytest.raises(TypeError):
            svc.getJobLogDetails(companyHandle="47", recordsPerPage=1, _soapheaders=[auth])
